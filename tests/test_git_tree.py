"""Sources from any revision: a git commit compiles in memory, without a checkout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import copy_example

from filmc.compiler.pipeline import compile_film
from filmc.lang.diagnostics import render_all
from filmc.lang.tree import GitTree, TreeError, using

GIT_ENV = {"GIT_AUTHOR_NAME": "Film Maker", "GIT_AUTHOR_EMAIL": "maker@example.com",
           "GIT_COMMITTER_NAME": "Film Maker", "GIT_COMMITTER_EMAIL": "maker@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout


def repo_with_example(tmp_path: Path) -> Path:
    repo = copy_example(tmp_path / "wolfpack")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the film")
    return repo


def keys(result) -> dict[str, str]:
    return {n: d["step"].key for n, d in result.graph.nodes(data=True)}


def test_a_revision_compiles_to_the_graph_the_working_tree_had(tmp_path: Path) -> None:
    repo = repo_with_example(tmp_path)
    main = repo / "film.film"
    before = compile_film(main, offline=True)
    hunt = repo / "scenes" / "01_hunt.film"
    hunt.write_text(hunt.read_text().replace("close_up ground_level portrait_lens",
                                             "wide ground_level portrait_lens"))
    (repo / "refs" / "chen_winter.png").unlink()  # gone from the working tree, not from HEAD
    with GitTree(repo, "HEAD") as tree, using(tree):
        at_head = compile_film(main, offline=True)
    assert at_head.ok, render_all(at_head.diags.sorted(), at_head.sources)
    assert keys(at_head) == keys(before)
    now = compile_film(main, offline=True)
    assert not now.ok  # the working tree lost a reference image
    assert git(repo, "status", "--porcelain").splitlines() == [
        " D refs/chen_winter.png", " M scenes/01_hunt.film"]  # nothing checked out


def test_a_diagnostic_in_a_revision_names_rev_and_path(tmp_path: Path) -> None:
    repo = repo_with_example(tmp_path)
    hunt = repo / "scenes" / "01_hunt.film"
    hunt.write_text(hunt.read_text().replace("cast CHEN(winter)\n", "cast CHEN(wintr)\n", 1))
    git(repo, "commit", "-q", "-am", "a typo")
    hunt.write_text(hunt.read_text().replace("CHEN(wintr)", "CHEN(winter)"))
    with GitTree(repo, "HEAD") as tree, using(tree):
        result = compile_film(repo / "film.film", offline=True)
    [d] = result.diags.errors
    assert d.span is not None and d.span.file == "HEAD:scenes/01_hunt.film"
    line = git(repo, "show", "HEAD:scenes/01_hunt.film").splitlines().index("    cast CHEN(wintr)")
    assert f"HEAD:scenes/01_hunt.film:{line + 1}:" in render_all([d], result.sources)


def test_links_in_a_revision_stay_inside_the_project(tmp_path: Path) -> None:
    repo = repo_with_example(tmp_path)
    os.symlink("/etc/passwd", repo / "refs" / "out.png")
    os.symlink("chen_front.png", repo / "refs" / "in.png")
    cast = repo / "cast.film"
    cast.write_text(cast.read_text().replace('ref "refs/chen_front.png"', 'ref "refs/in.png"'))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "links")
    with GitTree(repo, "HEAD") as tree, using(tree):
        ok = compile_film(repo / "film.film", offline=True)
    assert ok.ok
    cast.write_text(cast.read_text().replace('ref "refs/in.png"', 'ref "refs/out.png"'))
    git(repo, "commit", "-q", "-am", "a link out")
    with GitTree(repo, "HEAD") as tree, using(tree):
        bad = compile_film(repo / "film.film", offline=True)
    assert [d.code for d in bad.diags.errors] == ["F0404"]


def test_an_unknown_revision_says_what_to_name(tmp_path: Path) -> None:
    repo = repo_with_example(tmp_path)
    with pytest.raises(TreeError) as e:
        GitTree(repo, "no-such-branch")
    assert e.value.message == "`no-such-branch` is not a commit of this repository"
