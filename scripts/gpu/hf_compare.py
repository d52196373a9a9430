#!/usr/bin/env python3
"""Independent check of quantd's Llama forward against Hugging Face transformers (issue 10).

For two models -- the real stories260K and a randomly initialised Llama (GQA, non-power-of-two
intermediate size, weights scaled up so that its predictions are far from uniform) -- computes
the perplexity protocol of worker/eval/perplexity.h in transformers (fp32, same token ids from
the same sentencepiece model) and with `quantd-worker perplexity`, and prints both mean NLLs and
their relative difference. Exit 1 when any differs by more than 1e-4 relative.

  python3 scripts/gpu/hf_compare.py --worker build-gpu/worker/quantd-worker [--device cuda]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM

DATA = ".gpu/data"
SEQLEN = 256
WINDOWS = 8


def hf_mean_nll(model_dir, ids, device):
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for w in range(WINDOWS):
            x = torch.tensor(ids[w * SEQLEN:(w + 1) * SEQLEN], device=device)[None]
            logp = torch.log_softmax(model(x).logits[0, :-1].double(), -1)
            total -= logp.gather(1, x[0, 1:, None]).sum().item()
            count += SEQLEN - 1
    return total / count


def quantd_mean_nll(worker, model_dir, text_path, device):
    out = subprocess.run(
        [worker, "perplexity", "--model", model_dir, "--text", text_path, "--seqlen", str(SEQLEN),
         "--max-windows", str(WINDOWS), "--device", device, "--output", "json"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)["mean_nll"]


def random_llama(out_dir):
    config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=688,
                         num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                         max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0,
                         tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15 if "embed" in name or "lm_head" in name else 0.06)
            else:
                p.uniform_(0.5, 1.5)  # norms: not all ones, so that their weights matter
    model.save_pretrained(out_dir, safe_serialization=True)
    shutil.copy(f"{DATA}/models/stories260K/tokenizer.model", out_dir)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    text = open(f"{DATA}/text/wikitext2-test.raw", encoding="utf-8").read()[:60000]
    text_path = "/tmp/hf_compare_text.txt"
    with open(text_path, "w", encoding="utf-8") as f:
        f.write(text)
    sp = spm.SentencePieceProcessor(model_file=f"{DATA}/models/stories260K/tokenizer.model")
    ids = [sp.bos_id()] + sp.encode(text)

    random_dir = "/tmp/hf_random_llama"
    random_llama(random_dir)
    worst = 0.0
    for label, model_dir in [("stories260K", f"{DATA}/models/stories260K"),
                             ("random Llama (GQA 8/4, inter 688)", random_dir)]:
        hf = hf_mean_nll(model_dir, ids, args.device)
        ours = quantd_mean_nll(args.worker, model_dir, text_path, args.device)
        rel = abs(ours - hf) / abs(hf)
        worst = max(worst, rel)
        print(f"{label:36s} transformers {hf:.6f}  quantd {ours:.6f} nats "
              f"(ppl {math.exp(hf):.3f} / {math.exp(ours):.3f})  rel diff {rel:.2e}")
    print("hf_compare:", "PASS" if worst <= 1e-4 else "FAIL", f"(worst {worst:.2e}, limit 1e-4)")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
