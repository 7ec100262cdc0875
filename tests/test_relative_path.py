"""``nphmkit._io.relative_path``: records name a repository's folders, not one machine's."""

from pathlib import Path

from nphmkit._io import relative_path


def test_a_path_inside_the_root_becomes_relative(tmp_path):
    (tmp_path / "out" / "held").mkdir(parents=True)
    assert relative_path(tmp_path / "out" / "held", tmp_path) == str(Path("out") / "held")
    assert relative_path(str(tmp_path / "out" / ".." / "out" / "held"), str(tmp_path)) == str(Path("out") / "held")


def test_a_path_outside_the_root_is_kept_as_given(tmp_path):
    (tmp_path / "repo").mkdir()
    other = tmp_path / "elsewhere" / "data"
    assert relative_path(other, tmp_path / "repo") == str(other)
    assert relative_path("out/x", tmp_path / "repo") == "out/x"  # relative to the working folder, not the root


def test_a_link_into_the_root_counts_as_inside(tmp_path):
    (tmp_path / "repo" / "out").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "repo")
    assert relative_path(tmp_path / "link" / "out", tmp_path / "repo") == "out"
