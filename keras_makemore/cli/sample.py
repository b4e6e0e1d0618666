"""`sample` and `score`: words from a run or an exported model, and how likely given words are."""

import dataclasses
import json
import sys
from pathlib import Path

from keras_makemore.cli.flags import add_control_flag, add_source, open_source
from keras_makemore.sampling.controls import SamplingControls


def add_sample(sub) -> None:
    p = sub.add_parser("sample", help="sample new words from a trained run or an exported model",
                       description="Sample words from a run, a .tflite file or a SavedModel from `keras-makemore "
                                   "export`; report how many are novel (not training words). The same seed and "
                                   "options give the same words from all three. Words are printed as they are "
                                   "sampled, so -n can be large.")
    add_source(p)
    p.add_argument("-n", "--num", dest="num_samples", type=int, default=20, metavar="N", help="number of words (default 20)")
    p.add_argument("--seed", type=int, default=None, help="seed, negative or not; the same seed gives the same words (default: random, printed with --json)")
    for field in dataclasses.fields(SamplingControls):
        add_control_flag(p, field)
    p.add_argument("--new-only", action="store_true", help="only words that are not training words")
    p.add_argument("--exclude", metavar="FILE", help="never print the words of FILE (one a line)")
    p.add_argument("--max-draws", type=int, default=None, metavar="N",
                   help="with --new-only or --exclude: draw at most N words looking for new ones (default 100 x -n)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_sample)


_JSON_MAX_WORDS = 1_000_000  # --json holds every word in memory; plain output streams


_STREAMED_NOVELTY_WORDS = 100_000  # the novelty of a run with a streamed data file: of its first words sampled


def _sample(args) -> int:
    from keras_makemore.data.reading import read_words
    from keras_makemore.errors import UserError
    from keras_makemore.sampling.controls import resolve_seed
    from keras_makemore.sampling.words import iter_words, printable, printable_json

    opened = open_source(args)
    if args.json and args.num_samples > _JSON_MAX_WORDS:
        raise UserError(f"num_samples must be at most {_JSON_MAX_WORDS:,} with json, which holds every word in "
                        f"memory, got {args.num_samples:,}: drop --json to stream the words", argument="num_samples")
    from keras_makemore.data.streaming import StreamedCorpus

    corpus = training = None
    try:
        corpus = opened.run.corpus() if opened.run else None
    except UserError:
        if args.new_only:
            raise
    streamed = isinstance(corpus, StreamedCorpus)  # its words stay on disk: novelty is found by searching the file
    if streamed and args.new_only:
        raise UserError(f"new_only holds the training words in memory, and the run's data file {corpus.path} is "
                        "streamed from disk for its size: leave new_only out, or pass --exclude with a smaller list "
                        "of words", argument="new_only")
    if corpus is not None and not streamed:
        training = set(corpus.split.train)
    if args.new_only and training is None:
        raise UserError(f"new_only needs the training words, and {args.source} is not in a run's export folder: "
                        "sample the run directory, or pass --exclude with the training words", argument="new_only")
    exclude = (training if args.new_only else set()) | set(read_words(args.exclude) if args.exclude else ())
    seed = resolve_seed(args.seed)
    controls = {name: getattr(args, name) for name in SamplingControls.names()}
    max_length = opened.max_length if args.max_length is None else args.max_length  # 0 is refused, not "unset"
    words = iter_words(opened.model, opened.vocab, opened.block_size, args.num_samples, seed, exclude=exclude,
                       max_draws=args.max_draws, **controls | {"max_length": max_length})
    found, novel, collected, checked = 0, 0, [], []
    for word in words:
        found += 1
        novel += training is not None and word not in training
        if streamed and len(checked) < _STREAMED_NOVELTY_WORDS:
            checked.append(word)
        if args.json:
            collected.append(word)
        else:
            print(printable(word))  # a word of the training data must not drive the terminal
    novelty = novel / found if training is not None and found else None
    if checked:  # the first words sampled, searched for in one pass over the file
        known = set(corpus.known(checked))
        novelty = sum(w not in known for w in checked) / len(checked)
    if args.json:
        print(printable_json({"samples": collected, "novelty": novelty, "seed": seed, "requested": args.num_samples,
                              **controls, "new_only": args.new_only, "exclude": args.exclude}))
    if found < args.num_samples:
        print(f"# found {found:,} of {args.num_samples:,} words: the others drawn were training words or excluded; "
              "raise --max-draws or --temperature to find more", file=sys.stderr)
    if novelty is not None and not args.json:
        print(f"# {novelty:.0%} novel (not in the training words)", file=sys.stderr)
    return 0


def add_score(sub) -> None:
    p = sub.add_parser("score", help="how likely a model finds given words",
                       description="Score words with a run, a .tflite file or a SavedModel: total log-probability, "
                                   "mean NLL per character (end marker included) and perplexity; most plausible "
                                   "first. Rank candidate names, or flag unlikely entries of a list.")
    add_source(p)
    p.add_argument("words", nargs="*", metavar="WORD", help="words to score")
    p.add_argument("--file", metavar="FILE", help="also score the words of FILE, one a line")
    p.add_argument("--json", action="store_true",
                   help='print {"words": [{"word", "nll", "log_prob", "perplexity"}, ...]}')
    p.set_defaults(func=_score)


def _score(args) -> int:
    from keras_makemore.data.streaming import stream_threshold_bytes
    from keras_makemore.errors import UserError
    from keras_makemore.sampling.scoring import read_word_file, score_words
    from keras_makemore.sampling.words import printable, printable_json

    opened = open_source(args)
    if args.file and Path(args.file).is_file() and Path(args.file).stat().st_size > stream_threshold_bytes():
        return _score_streamed(args, opened)
    words = list(args.words) + (read_word_file(args.file, opened.vocab) if args.file else [])
    if not words:
        raise UserError("words: give words to score, or a file of them with --file FILE", argument="words")
    scores = sorted(score_words(opened.model, opened.vocab, words), key=lambda s: (s.nll, s.word))
    if args.json:
        print(printable_json({"words": [s.to_json() for s in scores]}))
        return 0
    print(f"{'nll':>8} {'perplexity':>11} {'log_prob':>10}  word")
    for s in scores:
        print(f"{s.nll:>8.4f} {s.perplexity:>11.3f} {s.log_prob:>10.4f}  {printable(s.word)}")
    return 0


def _score_streamed(args, opened) -> int:
    """`score` of a file too big to hold (as `open_corpus` would stream it): read and scored a batch of lines at a
    time, the scores printed in file order (sorting would hold them all)."""
    import itertools

    from keras_makemore.sampling.scoring import iter_word_file, score_words

    for _ in iter_word_file(args.file, opened.vocab):  # a first pass checks every line: an error prints nothing else
        pass
    print(f"# {args.file} is scored as it is read, for its size: the scores come in file order, not sorted",
          file=sys.stderr)
    batches = itertools.chain([list(args.words)] if args.words else [], iter_word_file(args.file, opened.vocab))
    first = True
    if args.json:
        print('{"words": [', end="")
    else:
        print(f"{'nll':>8} {'perplexity':>11} {'log_prob':>10}  word")
    for batch in batches:
        for s in score_words(opened.model, opened.vocab, batch):
            if args.json:
                print(("" if first else ", ") + json.dumps(s.to_json(), ensure_ascii=False), end="")
            else:
                print(f"{s.nll:>8.4f} {s.perplexity:>11.3f} {s.log_prob:>10.4f}  {s.word}")
            first = False
    if args.json:
        print("]}")
    return 0
