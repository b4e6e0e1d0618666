"""makemore.py's Transformer in PyTorch, trained for a wall-clock budget: the peer of `vs_makemore.py`.

The model, optimizer and loop are makemore.py's (karpathy/makemore, its
defaults): GPT with n_layer 4, n_head 4, n_embd 64, block_size = the longest
word + 1, NewGELU, `lm_head` without bias (204,544 parameters on names: the
Keras `transformer`'s 204,571 add a bias of 27 to its logits); AdamW at 5e-4,
betas (0.9, 0.99), weight decay 0.01, eps 1e-8; batch 32 drawn with
replacement by makemore.py's `DataLoader(RandomSampler(...))`; gradients
clipped to norm 1.0; `torch.manual_seed(3407)`; torch's default threads.

What differs from makemore.py, so that the comparison with keras-makemore is
like for like:
- the split is the lecture's 80/10/10 (`random.seed(42); random.shuffle(words)`,
  cut at int(0.8 n) and int(0.9 n)), the one keras-makemore uses, instead of
  makemore.py's last 1,000 words of a `torch.randperm`;
- the val loss is over the whole val split, the mean NLL per character with
  the end marker counted (what `keras-makemore evaluate` prints, and what
  makemore.py's loss with `ignore_index=-1` is per batch), instead of
  makemore.py's mean of 10 batch means;
- it stops after `--seconds` of training (evaluation included), and prints no
  samples and no per-step log.

PyTorch is not a dependency of keras-makemore, only of this benchmark: `pip install torch`.
It imports nothing of keras-makemore.

    python benchmarks/makemore_torch.py NAMES_TXT --seconds 600 [--eval-every 500] [--loader dataloader|tensor]

Prints one JSON object a line: `{"event": "start", ...}` (parameters, split
hashes, seconds from the process' start to the first step), then
`{"event": "eval", "seconds": s, "steps": n, "val_loss": v, "eval_seconds": e}`
every `--eval-every` steps and at the end, and `{"event": "end", ...}`.
`seconds` counts from the first step. `OMP_NUM_THREADS` sets torch's threads.
"""

import argparse
import hashlib
import json
import math
import random
import time

process_start = time.perf_counter()
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

# ----------------------------------------------------------------------------- makemore.py's model


class NewGELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        assert n_embd % n_head == 0
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size))
        self.n_head = n_head
        self.n_embd = n_embd

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float('-inf'))
        att = F.softmax(att, dim=-1)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(n_embd, 4 * n_embd), c_proj=nn.Linear(4 * n_embd, n_embd),
                                      act=NewGELU()))
        m = self.mlp
        self.mlpf = lambda x: m.c_proj(m.act(m.c_fc(x)))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlpf(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer=4, n_head=4, n_embd=64):
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([Block(n_embd, n_head, block_size) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            torch.nn.init.zeros_(module.bias)
            torch.nn.init.ones_(module.weight)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device).unsqueeze(0)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss


# ----------------------------------------------------------------------------- makemore.py's data


class CharDataset(Dataset):
    def __init__(self, words, chars, max_word_length):
        self.words = words
        self.max_word_length = max_word_length
        self.stoi = {ch: i + 1 for i, ch in enumerate(chars)}

    def __len__(self):
        return len(self.words)

    def __getitem__(self, idx):
        word = self.words[idx]
        ix = torch.tensor([self.stoi[w] for w in word], dtype=torch.long)
        x = torch.zeros(self.max_word_length + 1, dtype=torch.long)
        y = torch.zeros(self.max_word_length + 1, dtype=torch.long)
        x[1:1 + len(ix)] = ix
        y[:len(ix)] = ix
        y[len(ix) + 1:] = -1  # index -1 masks the loss at the inactive locations
        return x, y


def lecture_split(path):
    """The words of `path` (stripped, empty lines dropped) cut 80/10/10 as the lecture (and keras-makemore) does."""
    words = [w.strip() for w in open(path, encoding="utf-8").read().splitlines()]
    words = [w for w in words if w]
    chars = sorted(set(''.join(words)))
    max_word_length = max(len(w) for w in words)
    random.seed(42)
    random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return words[:n1], words[n1:n2], chars, max_word_length


def words_sha256(words):
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()


@torch.inference_mode()
def val_nll(model, x, y, batch_size=1000):
    """Mean NLL per predicted character (the end marker included, the padding after it not) over all of x, y."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits, _ = model(x[start:start + batch_size])
        targets = y[start:start + batch_size].reshape(-1)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets, ignore_index=-1,
                                 reduction="sum").item()
        count += int((targets != -1).sum())
    model.train()
    return total / count


def batches(dataset, batch_size, loader):
    """Endless minibatches drawn with replacement: makemore.py's DataLoader, or the same draw on stacked tensors."""
    if loader == "dataloader":
        sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=int(1e10))
        # makemore.py also passes pin_memory=True, which does nothing on a CPU.
        yield from DataLoader(dataset, batch_size=batch_size, num_workers=0, sampler=sampler)
    x, y = (torch.stack(t) for t in zip(*(dataset[i] for i in range(len(dataset)))))
    while True:
        ix = torch.randint(0, len(x), (batch_size,))
        yield x[ix], y[ix]


def emit(**record):
    print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="names.txt (keras_makemore.data.load_names() gives the packaged one)")
    parser.add_argument("--seconds", type=float, default=600, help="training budget, evaluations included")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between val passes (makemore.py: 500)")
    parser.add_argument("--loader", choices=("dataloader", "tensor"), default="dataloader",
                        help="dataloader: makemore.py's; tensor: torch.randint on stacked tensors (less Python)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(3407)
    train_words, val_words, chars, max_word_length = lecture_split(args.data)
    train_dataset = CharDataset(train_words, chars, max_word_length)
    val_dataset = CharDataset(val_words, chars, max_word_length)
    x_val, y_val = (torch.stack(t) for t in zip(*(val_dataset[i] for i in range(len(val_dataset)))))
    model = GPT(len(chars) + 1, max_word_length + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.99), weight_decay=0.01, eps=1e-8)
    data_iter = batches(train_dataset, args.batch_size, args.loader)
    emit(event="start", parameters=sum(p.numel() for p in model.parameters()), batch_size=args.batch_size,
         torch=torch.__version__,
         threads=torch.get_num_threads(), loader=args.loader, train_words=words_sha256(train_words),
         val_words=words_sha256(val_words), since_process_start=time.perf_counter() - process_start)

    start = time.perf_counter()
    eval_seconds = 0.0

    def evaluate(step):
        nonlocal eval_seconds
        t = time.perf_counter()
        val = val_nll(model, x_val, y_val)
        eval_seconds += time.perf_counter() - t
        emit(event="eval", seconds=time.perf_counter() - start, steps=step, val_loss=val, eval_seconds=eval_seconds)

    step = 0
    while time.perf_counter() - start < args.seconds:
        X, Y = next(data_iter)
        logits, loss = model(X, Y)
        model.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % args.eval_every == 0:
            evaluate(step)
    if step % args.eval_every:
        evaluate(step)
    emit(event="end", seconds=time.perf_counter() - start, steps=step, eval_seconds=eval_seconds)


if __name__ == "__main__":
    main()
