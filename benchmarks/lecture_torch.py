"""The makemore part-2 lecture's MLP, whole process, in PyTorch: the peer of `vs_pytorch.py`.

Written as the lecture writes it (build_dataset with block_size 3, the
lecture's split, C/W1/b1/W2/b2 drawn from one generator, 200,000 steps of
minibatch 32 drawn by `torch.randint`, lr 0.1 then 0.01 after 100,000,
`F.cross_entropy`, then the loss on train and val), so that
`benchmarks/vs_pytorch.py` can time it against `keras-makemore train` with the
same recipe. It leaves out the lecture's per-step `lossi.append(loss.log10().item())`,
which only feeds a plot; it saves nothing (the lecture's notebook does not).

PyTorch is not a dependency of keras-makemore: install it to run this (`pip install torch`).
The script imports nothing of keras-makemore, so its time is PyTorch's alone.

    python benchmarks/lecture_torch.py NAMES_TXT [--steps 200000]

Prints `train loss X  val loss Y` and, last, one JSON line with the losses,
the split sizes and the seconds of each stage.
"""

import argparse
import json
import time

started = time.perf_counter()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

imported = time.perf_counter()


def build_dataset(words, stoi, block_size=3):
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + '.':
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="names.txt (keras_makemore.data.load_names() gives the packaged one)")
    parser.add_argument("--steps", type=int, default=200_000)
    args = parser.parse_args()
    times = {"import": imported - started}

    t = time.perf_counter()
    import random
    words = open(args.data, "r").read().splitlines()
    chars = sorted(list(set(''.join(words))))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi['.'] = 0
    random.seed(42)
    random.shuffle(words)
    n1 = int(0.8 * len(words))
    n2 = int(0.9 * len(words))
    Xtr, Ytr = build_dataset(words[:n1], stoi)
    Xdev, Ydev = build_dataset(words[n1:n2], stoi)
    times["data"] = time.perf_counter() - t

    t = time.perf_counter()
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((27, 10), generator=g)
    W1 = torch.randn((30, 200), generator=g)
    b1 = torch.randn(200, generator=g)
    W2 = torch.randn((200, 27), generator=g)
    b2 = torch.randn(27, generator=g)
    parameters = [C, W1, b1, W2, b2]
    for p in parameters:
        p.requires_grad = True
    times["model"] = time.perf_counter() - t

    t = time.perf_counter()
    for i in range(args.steps):
        # minibatch construct
        ix = torch.randint(0, Xtr.shape[0], (32,))
        # forward pass
        emb = C[Xtr[ix]]  # (32, 3, 10)
        h = torch.tanh(emb.view(-1, 30) @ W1 + b1)  # (32, 200)
        logits = h @ W2 + b2  # (32, 27)
        loss = F.cross_entropy(logits, Ytr[ix])
        # backward pass
        for p in parameters:
            p.grad = None
        loss.backward()
        # update
        lr = 0.1 if i < 100000 else 0.01
        for p in parameters:
            p.data += -lr * p.grad
    times["training"] = time.perf_counter() - t

    t = time.perf_counter()
    losses = {}
    with torch.no_grad():
        for name, (X, Y) in (("train", (Xtr, Ytr)), ("val", (Xdev, Ydev))):
            emb = C[X]
            h = torch.tanh(emb.view(-1, 30) @ W1 + b1)
            logits = h @ W2 + b2
            losses[name] = F.cross_entropy(logits, Y).item()
    times["evaluation"] = time.perf_counter() - t

    print(f"train loss {losses['train']:.4f}  val loss {losses['val']:.4f}")
    print(json.dumps({"train_loss": losses["train"], "val_loss": losses["val"], "train_examples": len(Xtr),
                      "val_examples": len(Xdev), "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "seconds": times}))


if __name__ == "__main__":
    main()
