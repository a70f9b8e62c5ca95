"""The ``sklearn-shapley`` command: the embedded-data run, CSV input, its errors, and
the output files."""

import csv
import subprocess
import sys

import numpy as np
import pytest

from sklearn_shapley.cli import main, neutralise


def test_explain_embedded_dataset_writes_table_and_png(tmp_path, capsys):
    code = main(
        [
            "explain",
            "--explainers",
            "exact,kernel",
            "--rows",
            "5",
            "--output-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Exact" in out and "Kernel@1000" in out and "max eff. gap" in out
    assert (tmp_path / "importance.png").stat().st_size > 1000
    assert "InstaSHAP's values" not in out


def test_explain_says_why_instashap_has_an_efficiency_gap(tmp_path, capsys):
    args = ["explain", "--explainers", "instashap", "--rows", "5", "--quiet"]
    assert main([*args, "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "its gap is that model's error" in out and "InstaSHAPGAM.audit" in out


def _write_csv(path, header, rows, sep=","):
    path.write_text(
        "\n".join([sep.join(header)] + [sep.join(map(str, r)) for r in rows]) + "\n"
    )


def _explain(data, out_dir, *args):
    return main(
        ["explain", "--data", str(data), "--output-dir", str(out_dir), "--quiet", *args]
    )


def _read_attributions(path):
    """``(header, numeric table, output labels)`` of an attributions CSV."""
    with path.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    table = np.array([[float(v) for v in row[:-1]] for row in rows])
    return header, table, [row[-1] for row in rows]


def test_explain_user_csv_writes_attributions(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X[:, 0] + 2 * X[:, 1]
    data = tmp_path / "data.csv"
    _write_csv(
        data, ["a", "b", "c", "target"], np.column_stack([X, y]).round(6).tolist()
    )
    code = _explain(
        data,
        tmp_path / "out",
        "--target",
        "target",
        "--explainers",
        "exact",
        "--rows",
        "4",
    )
    assert code == 0
    header, table, labels = _read_attributions(
        tmp_path / "out" / "attributions_exact.csv"
    )
    assert header == ["a", "b", "c", "base_value", "explained_output", "output"]
    assert table.shape == (4, 5) and labels == ["prediction"] * 4
    np.testing.assert_allclose(
        table[:, -2] + table[:, :3].sum(axis=1), table[:, -1], rtol=1e-8
    )


def _penguins_rows(n=40):
    """Rows shaped like palmerpenguins' penguins.csv: text, numbers and NA cells."""
    rng = np.random.default_rng(0)
    species = np.array(["Adelie", "Chinstrap", "Gentoo"])[np.arange(n) % 3]
    island = np.where(
        species == "Gentoo", "Biscoe", rng.choice(["Dream", "Torgersen"], n)
    )
    bill = 38 + 5 * (species != "Adelie") + rng.normal(size=n).round(1)
    depth = 18 - 3 * (species == "Gentoo") + rng.normal(size=n).round(1)
    flipper = 190 + 20 * (species == "Gentoo") + rng.integers(-5, 5, n)
    mass = 3700 + 1300 * (species == "Gentoo") + rng.integers(-300, 300, n)
    sex = rng.choice(["male", "female"], n)
    rows = [
        [s, i, b, d, f, m, x, 2007 + k % 3]
        for k, (s, i, b, d, f, m, x) in enumerate(
            zip(species, island, bill, depth, flipper, mass, sex)
        )
    ]
    rows[3][2:7] = ["NA"] * 5  # as in the real file: a bird with nothing measured
    rows[8][6] = "NA"
    return rows


PENGUIN_COLUMNS = [
    "species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm",
    "body_mass_g", "sex", "year",
]  # fmt: skip


def test_penguins_csv_runs_as_is_with_one_output_for_every_explainer(tmp_path, capsys):
    data = tmp_path / "penguins.csv"
    _write_csv(data, PENGUIN_COLUMNS, _penguins_rows())
    out = tmp_path / "out"
    explainers = "quadraturetree,exact,kernel"
    code = _explain(data, out, "--target", "species", "--explainers", explainers)
    assert code == 0
    stdout = capsys.readouterr().out
    assert (
        "Output explained by every explainer: the margin (raw score) of each " in stdout
    )
    tables = {}
    for name in explainers.split(","):
        header, table, labels = _read_attributions(out / f"attributions_{name}.csv")
        assert header[:7] == PENGUIN_COLUMNS[1:]  # one attribution per column
        assert all(label.startswith("raw score of class ") for label in labels)
        np.testing.assert_allclose(  # efficiency, against the same output
            table[:, 7] + table[:, :7].sum(axis=1), table[:, 8], atol=1e-8
        )
        tables[name] = (table[:, 8], labels)
    for output, labels in tables.values():
        np.testing.assert_array_equal(output, tables["exact"][0])
        assert labels == tables["exact"][1]


def test_binary_classifier_explains_the_log_odds_of_the_positive_class(
    tmp_path, capsys
):
    rows = [r for r in _penguins_rows(60) if r[0] != "Gentoo"]
    data = tmp_path / "penguins.csv"
    _write_csv(data, PENGUIN_COLUMNS, rows)
    code = _explain(
        data, tmp_path, "--target", "species", "--explainers", "quadraturetree,kernel"
    )
    assert code == 0
    assert "the margin (log-odds) of class Chinstrap" in capsys.readouterr().out
    for name in ("quadraturetree", "kernel"):
        _, table, labels = _read_attributions(tmp_path / f"attributions_{name}.csv")
        assert set(labels) == {"log-odds of class Chinstrap"}


def test_missing_cells_reach_the_model_as_nan():
    from sklearn.ensemble import HistGradientBoostingRegressor

    from sklearn_shapley.cli import MarginWithMissing, _sentinels

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 3, 50), rng.normal(size=50)]).astype(float)
    X[::4, 0], X[1::5, 1] = np.nan, np.nan
    y = np.nan_to_num(X[:, 1]) + np.isnan(X[:, 0])
    categorical = np.array([True, False])
    model = HistGradientBoostingRegressor(categorical_features=categorical).fit(X, y)
    sentinels = _sentinels(X, categorical)
    Z = np.where(np.isnan(X), sentinels, X)
    assert np.isfinite(Z).all() and not np.isin(sentinels, X).any()
    np.testing.assert_array_equal(
        MarginWithMissing(model, sentinels)(Z)[:, 0], model.predict(X)
    )


def test_baseline_row_is_mean_or_mode_of_present_cells():
    from sklearn_shapley.cli import _baseline, _sentinels

    nan = np.nan
    X = np.array([[0, 1.0, nan], [2, 3.0, nan], [2, nan, nan], [nan, 8.0, nan]])
    categorical = np.array([True, False, False])
    sentinels = _sentinels(X, categorical)
    np.testing.assert_array_equal(
        _baseline(X, categorical, sentinels), [2.0, 4.0, sentinels[2]]
    )


@pytest.mark.parametrize(
    "sep, prefix", [(";", ""), ("\t", ""), ("|", ""), (",", "\ufeff")]
)
def test_delimiter_is_sniffed_and_bom_dropped(tmp_path, sep, prefix):
    data = tmp_path / "data.csv"
    rows = [[k % 3, k * 0.5, k % 2] for k in range(30)]
    _write_csv(data, ["y", "a b", "c"], rows, sep=sep)
    data.write_text(prefix + data.read_text(), encoding="utf-8")
    args = ["--target", "y", "--explainers", "quadraturetree", "--rows", "3"]
    assert _explain(data, tmp_path, *args) == 0
    header, _, _ = _read_attributions(tmp_path / "attributions_quadraturetree.csv")
    assert header[:2] == ["a b", "c"]


def test_target_is_matched_ignoring_case_when_only_one_column_fits(tmp_path):
    data = tmp_path / "penguins_raw.csv"
    rows = [[r[0], *r[2:6]] for r in _penguins_rows()]
    _write_csv(data, ["Species", "a", "b", "c", "d"], rows)
    args = ["--target", "species", "--explainers", "quadraturetree", "--rows", "3"]
    assert _explain(data, tmp_path, *args) == 0
    header, _, _ = _read_attributions(tmp_path / "attributions_quadraturetree.csv")
    assert header[:4] == ["a", "b", "c", "d"]


def test_latin1_file_runs_with_its_encoding(tmp_path, capsys):
    data = tmp_path / "data.csv"
    rows = [[["café", "thé"][k % 2], k, k % 2] for k in range(30)]
    data.write_bytes(
        "\n".join(["drink,n,y"] + [",".join(map(str, r)) for r in rows]).encode(
            "latin-1"
        )
    )
    args = ["--target", "y", "--explainers", "quadraturetree", "--rows", "3"]
    assert _explain(data, tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert (
        "not valid utf-8 (byte 0xe9 on line 2)" in err and "--encoding latin-1" in err
    )
    assert _explain(data, tmp_path, *args, "--encoding", "latin-1") == 0


def test_huge_text_field_is_read(tmp_path):
    data = tmp_path / "data.csv"
    rows = [[["short", "x" * 200_000][k % 2], k, k % 3] for k in range(20)]
    _write_csv(data, ["note", "n", "y"], rows)
    args = ["--target", "y", "--explainers", "quadraturetree", "--rows", "3"]
    assert _explain(data, tmp_path, *args) == 0


def test_outputs_replace_planted_symlinks_without_following_them(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data.csv"
    _write_csv(data, ["a", "b", "y"], rng.normal(size=(20, 3)).round(4).tolist())
    out = tmp_path / "out"
    out.mkdir()
    victims = {name: tmp_path / f"victim_{name}" for name in ("csv", "png")}
    for victim in victims.values():
        victim.write_text("precious")
    (out / "attributions_quadraturetree.csv").symlink_to(victims["csv"])
    (out / "importance.png").symlink_to(victims["png"])
    args = ["--target", "y", "--explainers", "quadraturetree", "--rows", "3"]
    assert _explain(data, out, *args) == 0
    for victim in victims.values():
        assert victim.read_text() == "precious"
    for name in ("attributions_quadraturetree.csv", "importance.png"):
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == [
        "attributions_quadraturetree.csv",
        "importance.png",
    ]  # no temporary file left behind


def test_feature_names_read_as_formulas_are_neutralised(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data.csv"
    header = ["=HYPERLINK(1)", "+a", "-b", "@c", "y"]
    _write_csv(data, header, rng.normal(size=(20, 5)).round(4).tolist())
    args = ["--target", "y", "--explainers", "quadraturetree", "--rows", "3"]
    assert _explain(data, tmp_path, *args) == 0
    names, _, _ = _read_attributions(tmp_path / "attributions_quadraturetree.csv")
    assert names[:4] == ["'=HYPERLINK(1)", "'+a", "'-b", "'@c"]
    assert [neutralise(s) for s in ("\tx", "\rx", "x=1", "")] == [
        "'\tx",
        "'\rx",
        "x=1",
        "",
    ]


NUMBERS = "".join(f"{k},{k % 3},{k % 2}\n" for k in range(12))


@pytest.mark.parametrize(
    "content, args, message",
    [
        (None, ["--target", "y"], "no such file"),
        ("", ["--target", "y"], "is empty"),
        ("a,b,y\n", ["--target", "y"], "has a header but no data rows"),
        ("a,b,y\n1,2,3\n", ["--target", "nope"], "target column 'nope' is not in"),
        ("a,b,y\n1,2,3\n", [], "--data needs --target"),
        ("a,b,y\n" + NUMBERS[:30], ["--target", "y"], "need at least 10"),
        ("a,a,y\n" + NUMBERS, ["--target", "y"], "duplicate column names: a"),
        ("y\n" + "1\n2\n" * 6, ["--target", "y"], "no feature columns besides"),
        ("a,b,y\n" + "1,2,5\n" * 12, ["--target", "y"], "same value (5) in every row"),
        ("a,b,y\n" + NUMBERS + "1,inf,1\n", ["--target", "y"], "(inf) in columns: b"),
        ("a,b,y\n" + NUMBERS + "1,2,\n", ["--target", "y"], "has 1 missing values"),
        ("a,b,y\n" + NUMBERS + "1,2,3,4\n", ["--target", "y"], "cannot read data.csv"),
        (
            "a,b,y\n" + "".join(f"{k},id{k},{k % 2}\n" for k in range(300)),
            ["--target", "y"],
            "more than 255 distinct values: b (300)",
        ),
        (
            "a,b,y\n" + "".join(f"{k},1,{'ab'[k % 2]}\n" for k in range(12)),
            ["--target", "y", "--task", "regression"],
            "use --task classification",
        ),
        ("a,b,y\n" + NUMBERS, ["--target", "y", "--encoding", "nope"], "--encoding"),
    ],
)
def test_explain_bad_input_gives_one_line_error(
    tmp_path, capsys, content, args, message
):
    data = tmp_path / "data.csv"
    if content is not None:
        data.write_text(content)
    code = _explain(data, tmp_path / "out", *args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert message in err


def _unwritable(path):
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize("problem", ["file", "below a file", "read-only"])
def test_unusable_output_dir_gives_one_line_error(
    tmp_path, capsys, monkeypatch, problem
):
    data = tmp_path / "data.csv"
    data.write_text("a,b,y\n" + NUMBERS)
    out = tmp_path / "out"
    if problem == "file":
        out.write_text("")
        message = "is a file, not a folder"
    elif problem == "below a file":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out"
        message = "cannot write in --output-dir"
    else:  # as root chmod does not stop writes: refuse the folder's files instead
        monkeypatch.setattr("tempfile.TemporaryFile", lambda dir: _unwritable(dir))
        message = "(Permission denied); choose a folder you can write to"
    code = _explain(data, out, "--target", "y", "--explainers", "quadraturetree")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err


def test_module_entry_point_prints_versions(tmp_path):
    # Run outside the source tree so the installed (compiled) package is imported.
    out = subprocess.run(
        [sys.executable, "-m", "sklearn_shapley", "versions"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert "build: " in out and ("OpenMP enabled" in out or "serial" in out)


def test_openmp_prange_kernel_runs_and_counts_threads():
    from sklearn_shapley._openmp import (
        effective_n_threads,
        openmp_enabled,
        parallel_thread_ids,
    )

    ids = parallel_thread_ids(10, 2)
    assert len(ids) == 10
    if openmp_enabled():
        # static schedule: the first half on thread 0, the second on thread 1
        assert ids == [0] * 5 + [1] * 5
        assert effective_n_threads(-1) >= 1 and effective_n_threads(3) == 3
    else:
        assert set(ids) == {0} and effective_n_threads(4) == 1
    with pytest.raises(ValueError):
        effective_n_threads(0)
