#!/usr/bin/env python3
"""Continue training an llmctl model on many processes, GPUs or machines with PyTorch's DistributedDataParallel.

The route (docs/scale-out.md):

    llmctl export --model runs/ch05 --format hf --out hf/ch05
    torchrun --nproc_per_node 8 scripts/scale-out/train_ddp.py --model hf/ch05 --data corpus.bin --out hf/ch05-ddp
    llmctl load-gpt2 --from hf/ch05-ddp --out models/ch05-ddp

Each process loads the Hugging Face export with transformers' GPT2LMHeadModel, reads the same token stream
(an llmctl token file from `llmctl tokenize --out`, or a text file tokenized with the export's own GPT-2
tokenizer files), cuts it into the book's sliding windows (max_length tokens, stride), trains on its share of
them (DistributedSampler) with AdamW, gradients averaged by DDP (NCCL on GPUs, gloo on CPUs), and rank 0 saves
the result with save_pretrained. Rank 0 prints one JSON line per update and a summary line at the end.

Needs torch and transformers (pip install torch transformers); torchrun comes with torch.
"""
import argparse
import json
import os
import shutil
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from transformers import GPT2LMHeadModel, GPT2TokenizerFast

TOKEN_FILE_MAGIC = b"LLMCTLTK"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")


def read_token_file(path):
    """An llmctl token file (docs/token-file.md): a 32-byte header, then uint16 or uint32 ids."""
    with open(path, "rb") as f:
        header = f.read(32)
    if len(header) < 32 or header[:8] != TOKEN_FILE_MAGIC:
        raise SystemExit(f"{path} is not an llmctl token file (make one with: llmctl tokenize --file TEXT --out {path})")
    version, size, count = int.from_bytes(header[8:12], "little"), int.from_bytes(header[12:16], "little"), int.from_bytes(header[16:24], "little")
    if version != 1 or size not in (2, 4):
        raise SystemExit(f"{path}: token file version {version} with {size}-byte ids is not supported")
    ids = np.memmap(path, dtype=np.uint16 if size == 2 else np.uint32, mode="r", offset=32)
    if len(ids) != count:
        raise SystemExit(f"{path}: the header says {count} ids, the file holds {len(ids)}; it is truncated or corrupt")
    return ids


def load_tokens(path, model_dir):
    """Token ids from an llmctl token file, or from a text file through the export's GPT-2 tokenizer."""
    with open(path, "rb") as f:
        is_token_file = f.read(8) == TOKEN_FILE_MAGIC
    if is_token_file:
        return read_token_file(path)
    tokenizer = GPT2TokenizerFast.from_pretrained(model_dir)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # <|endoftext|> in the text is the end-of-text token, as `llmctl tokenize` and the book's tiktoken call treat it
    return np.array(tokenizer(text, verbose=False)["input_ids"], dtype=np.int64)


class SlidingWindows(Dataset):
    """The book's GPTDatasetV1: inputs ids[i : i+L], targets ids[i+1 : i+L+1], for i = 0, stride, 2·stride, …"""

    def __init__(self, ids, max_length, stride):
        self.ids, self.max_length = ids, max_length
        self.starts = range(0, len(ids) - max_length, stride)

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, k):
        i = self.starts[k]
        window = torch.from_numpy(np.asarray(self.ids[i : i + self.max_length + 1], dtype=np.int64))
        return window[:-1], window[1:]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a Hugging Face GPT-2 directory (llmctl export --format hf)")
    p.add_argument("--data", required=True, help="an llmctl token file (.bin) or a UTF-8 text file")
    p.add_argument("--out", required=True, help="where rank 0 saves the trained model (save_pretrained)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many updates")
    p.add_argument("--batch-size", type=int, default=4, help="windows per process per update")
    p.add_argument("--max-length", type=int, default=None, help="window length; default: the model's context")
    p.add_argument("--stride", type=int, default=None, help="default: max-length (windows do not overlap)")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=None, help="clip the global gradient norm to this")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--backend", choices=("auto", "nccl", "gloo"), default="auto", help="auto: nccl with CUDA, else gloo")
    args = p.parse_args()

    if "RANK" not in os.environ:
        raise SystemExit("run this under torchrun, e.g.: torchrun --nproc_per_node 2 train_ddp.py --model … --data … --out …")
    if os.environ["RANK"] == "0" and os.path.isdir(args.out) and os.listdir(args.out):
        raise SystemExit(f"{args.out} is not empty: choose another --out")
    backend = args.backend if args.backend != "auto" else ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if backend == "nccl":
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    torch.manual_seed(args.seed + rank)  # dropout differs per process; the weights start equal (DDP broadcasts rank 0's)

    model = GPT2LMHeadModel.from_pretrained(args.model).to(device)
    model.train()
    max_length = args.max_length or model.config.n_positions
    if max_length > model.config.n_positions:
        raise SystemExit(f"--max-length {max_length} is longer than the model's context ({model.config.n_positions})")
    data = SlidingWindows(load_tokens(args.data, args.model), max_length, args.stride or max_length)
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    if len(loader) == 0:
        raise SystemExit(
            f"{len(data)} windows of {max_length + 1} tokens make no batch of {args.batch_size} on each of {world} "
            "processes: give more data, or lower --batch-size / --max-length"
        )
    # GPT-2's causal masks are bool buffers the model builds itself, the same on every process; gloo cannot
    # broadcast bool tensors ("Invalid scalar type"), so DDP leaves them out of its start-up sync
    masks = [name for name, buffer in model.named_buffers() if buffer.dtype == torch.bool]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, masks)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    total = args.epochs * len(loader)
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    step, tokens, started = 0, 0, time.time()
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every process
        for inputs, targets in loader:
            if step == total:
                break
            inputs, targets = inputs.to(device), targets.to(device)
            logits = ddp(input_ids=inputs).logits
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # DDP all-reduces (averages) the gradients here
            if args.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(ddp.parameters(), args.grad_clip)
            optimizer.step()
            step += 1
            tokens += inputs.numel() * world
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss)
            if rank == 0:
                line = {"step": step, "epoch": epoch, "loss": mean_loss.item() / world, "lr": args.lr}
                line["tokens_per_second"] = round(tokens / (time.time() - started), 1)
                print(json.dumps(line), flush=True)
        if step == total:
            break

    # DDP keeps the replicas equal; check it before saving one of them
    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    weights = torch.arange(len(flat), device=device) % 1009 + 1
    fingerprint = torch.stack([flat.sum(), (flat * weights).sum()])
    fingerprints = [torch.zeros_like(fingerprint) for _ in range(world)]
    dist.all_gather(fingerprints, fingerprint)
    if rank == 0:
        model.save_pretrained(args.out, safe_serialization=True)
        for name in TOKENIZER_FILES:
            if os.path.exists(os.path.join(args.model, name)):
                shutil.copy(os.path.join(args.model, name), args.out)
        agree = all(torch.equal(f, fingerprints[0]) for f in fingerprints)
        summary = {"saved": args.out, "steps": step, "world_size": world, "backend": backend, "replicas_agree": agree}
        summary["seconds"] = round(time.time() - started, 2)
        summary["tokens"] = tokens
        print(json.dumps(summary), flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
