"""`plot`, `report` and `export`: what is made from a finished run."""

import json

from keras_makemore.cli.flags import non_negative_int


def add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw the embeddings and the loss curves of a run",
                       description="Write embeddings.png (every character at its embedding point, PCA-projected "
                                   "when the embedding has more than 2 dimensions) and loss.png (train and val "
                                   "loss with the learning rate) for a run.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", dest="out_dir", metavar="DIR", help="where the PNG files go (default: RUN_DIR)")
    p.set_defaults(func=_plot)


def _plot(args) -> int:
    from keras_makemore.analysis.plots import plot_run

    for path in plot_run(args.run_dir, args.out_dir):
        print(path)
    return 0


def add_report(sub) -> None:
    p = sub.add_parser("report", help="write a Markdown report of a run",
                       description="Write RUN_DIR/report.md: settings, parameter count, losses per split with "
                                   "perplexity and bits/char, the fit verdict, sampled words with novelty, and "
                                   "the plots (drawn into RUN_DIR).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-n", "--num", dest="num_samples", type=non_negative_int, default=20, metavar="N",
                   help="sampled words to list (default 20)")
    p.add_argument("--seed", type=int, default=None, help="seed of the samples (default: the run's seed)")
    p.set_defaults(func=_report)


def _report(args) -> int:
    from keras_makemore.analysis.report import write_report

    print(write_report(args.run_dir, num_samples=args.num_samples, seed=args.seed))
    return 0


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a run to a SavedModel and a LiteRT .tflite file for devices",
                       description="Write RUN_DIR/export/: a SavedModel and a .tflite file with the signatures "
                                   "next_token, generate, score, decode and their fixed-shape twins for the "
                                   "browser, and export.json (with the SavedModel's sha256); then compare the "
                                   ".tflite model with Keras on every val context.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--quantize", default="none", choices=["none", "float16", "dynamic", "int8"],
                   help="none: float32 (default); float16: float16 weights; dynamic: int8 weights; "
                        "int8: int8 weights and activations, calibrated on training contexts")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with Keras on the val split")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from keras_makemore.artifacts.signatures import SIGNATURES
    from keras_makemore.artifacts.writer import export_run

    report = export_run(args.run_dir, args.quantize, check=not args.no_check)
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    print(f"saved model  {report.saved_model}")
    print(f"litert       {report.litert}  ({report.litert_bytes:,} bytes, quantize {report.quantize})")
    print(f"signatures   {', '.join(SIGNATURES)}")
    if report.check:
        c = report.check
        print(f"val check    {c.examples:,} contexts: max |p_litert - p_keras| {c.max_abs_diff:.2g}; "
              f"loss keras {c.keras_loss:.4f}, litert {c.exported_loss:.4f}")
    print(f"next: keras-makemore sample {report.litert}   or   python export/sample_tflite.py {report.litert}")
    return 0
