"""Launch one paper row or one ablation row: checks, tiny mode, the override list, then ``scripts.train``.

    bash scripts/launch.sh BACKBONE ROW [scripts.train arguments]    e.g. univl youcook_caption --set trainer.epochs=5
    bash scripts/launch.sh ablation TABLE [scripts.train arguments]   TABLE: 7 8 9 10 11; the row is ROW=...
    (``scripts/paper/*.sh`` are these commands, one per row or table; ``scripts/launch.sh`` sets up the venv
    and runs ``python -m scripts.launch``.)

Environment:
    METHOD=meltr|single|sum|fixed|linear (default meltr)   COEFFICIENTS='{name: 1, ...}' for METHOD=fixed
    TINY=1: synthetic data in the official formats (``data.synthetic``, written to OUTPUT_DIR/synthetic_data) and
        the tiny model of ``configs/tiny/<backbone>.yaml``: the same code path in seconds on CPU
        (SYNTHETIC_ARGS: extra arguments of ``python -m data.synthetic``, e.g. ``--videos 8``)
    DATA_DIR=folder with the official files; INIT_MODEL (and VIOLET's optional SWIN_INIT): the official checkpoints
    OUTPUT_DIR (default runs/<backbone>_<row>_<METHOD>[_tiny], ablations runs/ablation/table<N>_<ROW>[_tiny])
    NGPU=1 (>1: ``torchrun --standalone --nproc_per_node=NGPU``)
    UniVL: MODALITY=video (captioning without transcripts); the mosi row: FORMAT=mmsa|univl|csd, FEATURE_DIM
    Ablations: ROW (the table's row), TASK=retrieval|caption (Table 10 / Figure 5), METHOD=sum|meltr (Table 11)

What differs between backbones is data (:data:`BACKBONES`: the synthetic dataset of each row, the checkpoint
variables), and so are the ablation tables (:data:`TABLES`). A launch that cannot start says which variable to
set and exits with status 2. One process trains in this process; NGPU > 1 replaces it with torchrun.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scripts.paper_results import TABLE7_COEFFICIENTS, TABLE11_LOSSES, coefficients_yaml

__all__ = ["BACKBONES", "TABLES", "Backbone", "CheckpointVar", "Launch", "LaunchError", "RowOptions", "Setting", "Table", "main",
           "prepare", "prepare_ablation", "prepare_row"]

ROOT = Path(__file__).resolve().parents[1]


class LaunchError(Exception):
    """A launch that cannot start (bad or missing environment variable); the message names the variable."""


@dataclass(frozen=True)
class CheckpointVar:
    """An environment variable naming an official checkpoint file, and the run-config key that receives it."""

    var: str  # e.g. INIT_MODEL
    key: str  # e.g. init_model
    what: str  # shown when it is missing: "the official univl.pretrained.bin"
    required: bool = True  # False: checked and passed only when set


@dataclass(frozen=True)
class Backbone:
    """How the rows of one backbone are launched (the rows are the keys of ``synthetic``)."""

    synthetic: Mapping[str, tuple[str, ...]]  # row -> the dataset arguments of data.synthetic for TINY=1
    checkpoints: tuple[CheckpointVar, ...]  # official files of a full run, checked in this order
    synthetic_extra: tuple[str, ...] = ()  # data.synthetic arguments of every row (before SYNTHETIC_ARGS)
    options: Callable[[str, Mapping[str, str]], RowOptions] | None = None  # the backbone's own variables (row, env)


@dataclass
class RowOptions:
    """What a backbone's own environment variables (UniVL's MODALITY, FORMAT) add to a row's launch."""

    overrides: list[str] = field(default_factory=list)  # --set key=value of scripts.train
    synthetic: list[str] = field(default_factory=list)  # data.synthetic arguments (TINY=1)


# CMU-MOSI file layouts and their visual feature width (mmsa: MMSA's 20-d FACET; univl: S3D 1024-d;
# csd: CMU_MOSI_Visual_Facet_42.csd, FACET 4.2, 35 features). FEATURE_DIM overrides the width.
MOSI_FEATURE_DIMS: dict[str, int] = {"mmsa": 20, "univl": 1024, "csd": 35}


def _univl_options(row: str, env: Mapping[str, str]) -> RowOptions:
    """MODALITY=video (every UniVL row: no transcripts); FORMAT and FEATURE_DIM (the mosi row's files)."""
    opts = RowOptions()
    modality = env.get("MODALITY") or ""
    if modality not in ("", "video"):
        raise LaunchError(f"MODALITY must be video (captioning without transcripts) or unset, got '{modality}'")
    if modality == "video":
        opts.overrides.append("data.text_source=empty")
    if row == "mosi":
        fmt = env.get("FORMAT") or "mmsa"
        if fmt not in MOSI_FEATURE_DIMS:
            raise LaunchError(f"FORMAT must be {', '.join(MOSI_FEATURE_DIMS)}, got '{fmt}'")
        dim = env.get("FEATURE_DIM") or str(MOSI_FEATURE_DIMS[fmt])
        opts.overrides += [f"data.mosi_format={fmt}", f"data.feature_dim={dim}"]
        opts.synthetic += ["--format", fmt]
    return opts


BACKBONES: dict[str, Backbone] = {
    "univl": Backbone(
        {"youcook_caption": ("youcook2",), "youcook_retrieval": ("youcook2",), "msrvtt_caption": ("msrvtt",),
         "msrvtt7k_retrieval": ("msrvtt",), "msrvtt9k_retrieval": ("msrvtt",), "mosi": ("mosi",)},
        (CheckpointVar("INIT_MODEL", "init_model", "the official univl.pretrained.bin"),), options=_univl_options),
    # 32-pixel frames: one patch per frame (MVM then masks single patches; the official 3-D blocks need >= 96 px)
    "violet": Backbone(
        {"msrvtt7k_retrieval": ("violet-msrvtt",), "msrvtt9k_retrieval": ("violet-msrvtt",), "msvd_qa": ("msvd",),
         "tgif_action": ("tgif", "--task", "action"), "tgif_transition": ("tgif", "--task", "transition"),
         "tgif_frame": ("tgif", "--task", "frameqa")},
        (CheckpointVar("INIT_MODEL", "init_model", "the official ckpt_violet_pretrain.pt"),
         # Video Swin-S Kinetics-400; the fork loads it unconditionally before the VIOLET checkpoint
         CheckpointVar("SWIN_INIT", "swin_init", "the official ckpt_video-swin.pt", required=False)),
        ("--image-size", "32")),
    "allinone": Backbone(
        {"msrvtt7k_retrieval": ("allinone-msrvtt",), "msrvtt9k_retrieval": ("allinone-msrvtt",)},
        (CheckpointVar("INIT_MODEL", "init_model", "the official all-in-one-plus-224.ckpt"),),
        ("--videos", "12")),
}

# Synthetic datasets whose reader must be told the written split sizes (UniVL's MSRVTT reader takes the
# official 7010/2990 split as counts; data/synthetic.py scales them and records them in this file).
SPLIT_SIZES_FILE = "synthetic_info.json"
SPLIT_SIZES: dict[str, tuple[str, ...]] = {"msrvtt": ("n_train_videos", "n_test_videos")}


@dataclass(frozen=True)
class Setting:
    """What one ablation row changes in its UniVL row: the combiner, its coefficients, config overrides."""

    method: str
    overrides: tuple[str, ...] = ()
    coefficients: str = ""  # YAML mapping for trainer.combiner.coefficients (METHOD=fixed)


@dataclass(frozen=True)
class Table:
    """One paper ablation table: the UniVL row it runs and its rows (``ROW=...``)."""

    id: str  # row.json "table": "7" ... "11", "fig5"
    title: str  # in messages: "paper Table 7"
    univl_row: str
    rows: Mapping[str, Setting]
    methods: tuple[str, ...] = ()  # Table 11: METHOD picks the training (the row id becomes ROW-METHOD)


_LT = "trainer.combiner.meltr"
# SE / TE only: the UniVL preset's sizes with one embedding (the preset itself has both)
_ONE_EMBEDDING = ("trainer.combiner.preset=null", f"{_LT}.scale_hidden_dim=128", f"{_LT}.hidden_dim=256",
                  f"{_LT}.ffn_dim=512", f"{_LT}.num_heads=8", f"{_LT}.num_layers=1", f"{_LT}.dropout=0.0")
_TABLE10_ROWS = {"linear": Setting("linear"), "se": Setting("meltr", (*_ONE_EMBEDDING, f"{_LT}.embedding=se")),
                 "te": Setting("meltr", (*_ONE_EMBEDDING, f"{_LT}.embedding=te")), "se_te": Setting("meltr")}
_HG = "trainer.meta.hypergrad"
TABLES: dict[str, Table] = {
    # Table 7: YouCook2 captioning (video + transcript), fixed loss coefficients (A)-(E) vs MELTR
    "7": Table("7", "paper Table 7", "youcook_caption",
               {**{r: Setting("fixed", coefficients=coefficients_yaml(r)) for r in TABLE7_COEFFICIENTS},
                "meltr": Setting("meltr")}),
    # Table 8: MSRVTT-7k retrieval, sum vs MELTR under each hypergradient scheme (itd = Meta-Weight-Net, aid_fp =
    # AuxiLearn, lite = AID-FP-Lite as the official code computes it, lite_jvp = the same by forward-mode JVP)
    "8": Table("8", "paper Table 8", "msrvtt7k_retrieval",
               {"sum": Setting("sum"),
                **{r: Setting("meltr", (f"{_HG}.name={r}",)) for r in ("itd", "stocbio", "aid_cg", "aid_fp")},
                "lite": Setting("meltr", (f"{_HG}.name=aid_fp_lite", f"{_HG}.mode=autograd")),
                "lite_jvp": Setting("meltr", (f"{_HG}.name=aid_fp_lite", f"{_HG}.mode=jvp"))}),
    # Table 9 (Appendix C): the regulariser strength gamma (ROW = gamma)
    "9": Table("9", "paper Table 9", "msrvtt7k_retrieval",
               {g: Setting("meltr", (f"trainer.meta.gamma={g}",)) for g in ("0", "0.001", "0.01", "0.1", "1", "10", "100")}),
    # Table 10 (Appendix D): the loss transformer's inputs; TASK=caption runs the same rows for Figure 5
    "10": Table("10", "paper Table 10, Appendix D", "msrvtt7k_retrieval", _TABLE10_ROWS),
    "fig5": Table("fig5", "Figure 5 runs, Appendix E", "youcook_caption", _TABLE10_ROWS),
    # Table 11 (Appendix G): UniVL's advanced losses added to its five pre-training losses, by sum or MELTR
    "11": Table("11", "paper Table 11", "youcook_caption",
                {r: Setting("", (f"model.losses=[{','.join(losses)}]",)) for r, losses in TABLE11_LOSSES.items()},
                methods=("sum", "meltr")),
}
# Table 10's TASK switch: retrieval is the table, caption the runs of Figure 5
TABLE10_TASKS: dict[str, str] = {"retrieval": "10", "caption": "fig5"}


@dataclass
class Launch:
    """A prepared launch: the arguments of ``scripts.train`` and the number of processes."""

    train_args: list[str]
    ngpu: int = 1
    output_dir: str = ""
    synthetic: list[str] = field(default_factory=list)  # the data.synthetic arguments run (TINY=1), else empty


def _ngpu(env: Mapping[str, str]) -> int:
    value = env.get("NGPU") or "1"
    if not re.fullmatch(r"[1-9][0-9]*", value):
        raise LaunchError(f"NGPU must be a whole number of GPUs >= 1 (got '{value}')")
    return int(value)


def _tiny(env: Mapping[str, str]) -> bool:
    value = env.get("TINY") or "0"
    if value not in ("0", "1"):
        raise LaunchError(f"TINY must be 1 (synthetic data, tiny model) or 0, got '{value}'")
    return value == "1"


def _checkpoint(var: CheckpointVar, env: Mapping[str, str]) -> list[str]:
    value = env.get(var.var) or ""
    if not value:
        if not var.required:
            return []
        raise LaunchError(f"set {var.var} to {var.what} (or TINY=1)")
    if not Path(value).is_file():
        raise LaunchError(f"{var.var} not found: {value}")
    return ["--set", f"{var.key}={value}"]


def _write_synthetic(argv: list[str]) -> None:
    """Writes a synthetic dataset in the official formats (its listing of written files is not shown)."""
    # imported here: only TINY=1 needs the writers
    from data.synthetic import main as synthetic_main

    with contextlib.redirect_stdout(io.StringIO()):
        synthetic_main(argv)


def _split_sizes(dataset: str, data_dir: str) -> list[str]:
    keys = SPLIT_SIZES.get(dataset, ())
    if not keys:
        return []
    info = json.loads((Path(data_dir) / SPLIT_SIZES_FILE).read_text(encoding="utf-8"))
    return [a for k in keys for a in ("--set", f"data.{k}={int(info[k])}")]


def _rel(path: Path) -> str:
    return os.path.relpath(path)


def prepare_row(backbone: str, row: str, env: Mapping[str, str], args: Sequence[str] = (), *,
                method: str | None = None, coefficients: str | None = None, output_dir: str | None = None,
                row_info: dict | None = None) -> Launch:
    """Checks the environment of one paper row, writes its synthetic data (TINY=1) and builds the train arguments.

    ``method``, ``coefficients`` and ``output_dir`` replace METHOD, COEFFICIENTS and OUTPUT_DIR (an ablation
    row sets them); ``row_info`` replaces the row.json fields of a paper row.

    Raises:
        LaunchError: a bad NGPU or TINY, an unknown backbone or row, a missing DATA_DIR or checkpoint file.
    """
    ngpu = _ngpu(env)  # first: a bad NGPU fails before anything else is looked at
    if backbone not in BACKBONES:
        raise LaunchError(f"unknown backbone '{backbone}'; known: {', '.join(BACKBONES)}")
    spec = BACKBONES[backbone]
    if row not in spec.synthetic:
        raise LaunchError(f"unknown {backbone} row '{row}'; rows: {', '.join(spec.synthetic)}")
    config = ROOT / "configs" / backbone / f"{row}.yaml"
    if not config.is_file():
        raise LaunchError(f"no config {_rel(config)} for row {row} of {backbone}")
    tiny = _tiny(env)
    method = method if method is not None else (env.get("METHOD") or "meltr")
    coefficients = coefficients if coefficients is not None else (env.get("COEFFICIENTS") or "")
    out = output_dir or env.get("OUTPUT_DIR") or f"runs/{backbone}_{row}_{method}{'_tiny' if tiny else ''}"
    opts = spec.options(row, env) if spec.options else RowOptions()

    train = ["--config", _rel(config), "--set", f"output_dir={out}", "--set", f"trainer.combiner.name={method}"]
    if coefficients:
        train += ["--set", f"trainer.combiner.coefficients={coefficients}"]
    synthetic: list[str] = []
    if tiny:
        data_dir = f"{out}/synthetic_data"
        dataset = spec.synthetic[row]
        synthetic = [*dataset, "--out", data_dir, *spec.synthetic_extra, *opts.synthetic,
                     *(env.get("SYNTHETIC_ARGS") or "").split()]
        _write_synthetic(synthetic)
        train[2:2] = ["--overlay", _rel(ROOT / "configs" / "tiny" / f"{backbone}.yaml")]
        train += ["--set", f"data.root={data_dir}", *_split_sizes(dataset[0], data_dir)]
    else:
        data_dir = env.get("DATA_DIR") or ""
        if not data_dir:
            raise LaunchError("set DATA_DIR to the folder with the official files (or TINY=1)")
        if not Path(data_dir).is_dir():
            raise LaunchError(f"DATA_DIR not found: {data_dir}")
        train += ["--set", f"data.root={data_dir}"]
        for var in spec.checkpoints:
            train += _checkpoint(var, env)
    if row_info is None:
        row_info = {"backbone": backbone, "row": row, "method": method, "tiny": tiny, "args": list(args)}
        if coefficients:
            row_info["coefficients"] = coefficients
    train += [*(a for o in opts.overrides for a in ("--set", o)), *args, "--row-info", json.dumps(row_info)]
    return Launch(train, ngpu, out, synthetic)


def _ablation_setting(table_id: str, env: Mapping[str, str]) -> tuple[Table, str, Setting]:
    """The table (Table 10: by TASK), the row id and the setting that ROW (and METHOD) pick."""
    if table_id not in TABLES or table_id == "fig5":  # Figure 5's runs are Table 10's rows with TASK=caption
        raise LaunchError(f"unknown ablation table '{table_id}'; tables: 7 8 9 10 11")
    if table_id == "10":
        task = env.get("TASK") or "retrieval"
        if task not in TABLE10_TASKS:
            raise LaunchError(f"TASK must be retrieval (Table 10) or caption (Figure 5 runs), got '{task}'")
        table_id = TABLE10_TASKS[task]
    table = TABLES[table_id]
    method = ""
    if table.methods:
        method = env.get("METHOD") or "meltr"
        if method not in table.methods:
            raise LaunchError(f"METHOD must be {' or '.join(table.methods)} for {table.title}, got '{method}'")
    row = env.get("ROW") or ""
    if row not in table.rows:
        raise LaunchError(f"set ROW to one of {' '.join(table.rows)} ({table.title}), got '{row}'")
    setting = table.rows[row]
    if method:
        return table, f"{row}-{method}", Setting(method, setting.overrides, setting.coefficients)
    return table, row, setting


def _replace_previous(out: Path, args: Sequence[str]) -> list[str]:
    """A fresh ablation run (no --resume) replaces an earlier run in ``out``: its metrics.jsonl moves aside
    (kept, dated) and scripts.train is told to overwrite the earlier checkpoints (it refuses otherwise)."""
    if any(a == "--resume" or a.startswith("--resume=") for a in args):
        return []
    if (out / "metrics.jsonl").is_file():
        (out / "metrics.jsonl").rename(out / f"metrics.{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    return ["--overwrite"] if (out / "last.pt").exists() or (out / "best.pt").exists() else []


def prepare_ablation(table_id: str, env: Mapping[str, str], args: Sequence[str] = ()) -> Launch:
    """One row of a paper ablation table: its UniVL row with the row's combiner and overrides (see :data:`TABLES`).

    Raises:
        LaunchError: an unknown table, ROW, TASK or METHOD (the message lists the valid ones), or see
            :func:`prepare_row`.
    """
    _ngpu(env)
    table, row_id, setting = _ablation_setting(table_id, env)
    tiny = _tiny(env)
    name = f"table{table.id}" if table.id.isdigit() else table.id
    out = env.get("OUTPUT_DIR") or f"runs/ablation/{name}_{row_id}{'_tiny' if tiny else ''}"
    row_args = [a for o in setting.overrides for a in ("--set", o)] + list(args)
    info = {"table": table.id, "row": row_id, "method": setting.method, "univl_row": table.univl_row, "tiny": tiny,
            "args": row_args}
    if setting.coefficients:
        info["coefficients"] = setting.coefficients
    overwrite = _replace_previous(Path(out), args)
    return prepare_row("univl", table.univl_row, env, [*row_args, *overwrite], method=setting.method,
                       coefficients=setting.coefficients, output_dir=out, row_info=info)


def prepare(argv: Sequence[str], env: Mapping[str, str]) -> Launch:
    """``BACKBONE ROW [train args]`` or ``ablation TABLE [train args]`` -> the launch (see the module doc)."""
    if len(argv) < 2:
        raise LaunchError("usage: python -m scripts.launch BACKBONE ROW | ablation TABLE [scripts.train arguments]")
    if argv[0] == "ablation":
        return prepare_ablation(argv[1], env, argv[2:])
    return prepare_row(argv[0], argv[1], env, argv[2:])


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Prepares the launch and trains: in this process for one GPU, else replaced by torchrun. Returns the exit status."""
    try:
        launch = prepare(sys.argv[1:] if argv is None else argv, os.environ if env is None else env)
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if launch.ngpu > 1:
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc_per_node={launch.ngpu}", "-m", "scripts.train", *launch.train_args])
    from scripts.train import main as train

    return train(launch.train_args)


if __name__ == "__main__":
    raise SystemExit(main())
