// The filmc extension: the `.film` language (highlighting from syntaxes/), and filmc's
// language server, started as `filmc lsp` (docs/editors.md).
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration('filmc');
  const serverOptions = {
    command: config.get('path', 'filmc'),
    args: ['lsp'],
    transport: TransportKind.stdio, // the client adds `--stdio`, which `filmc lsp` accepts
  };
  const clientOptions = {
    documentSelector: [{ scheme: 'file', language: 'film' }],
    initializationOptions: { debounce: config.get('debounce', 0.2) },
    synchronize: {
      // A changed filmc.toml or film.lock changes what a film's checks say.
      fileEvents: vscode.workspace.createFileSystemWatcher('**/{filmc.toml,*.lock}'),
    },
  };
  client = new LanguageClient('filmc', 'filmc', serverOptions, clientOptions);
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
