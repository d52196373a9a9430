#!/usr/bin/env python3
"""Writes a Llama model folder with random weights for speed measurements on a GPU machine.

The shapes are Llama-2-7B's (hidden 4096, intermediate 11008, 32 heads, vocab 32000) unless
overridden; --layers keeps fewer blocks so that a job fits in a short lease (times scale with
the block count). Weights are N(0, 0.02^2) in bfloat16, norms are ones; the tokenizer is the
Llama 2 tokenizer.model from the test data. Needs torch and safetensors.

  python3 scripts/gpu/make_random_llama.py OUT_DIR [--layers 4] [--tokenizer FILE]
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--intermediate", type=int, default=11008)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv_heads", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--tokenizer", default=".gpu/data/tokenizers/llama2/tokenizer.model")
    args = parser.parse_args()

    os.makedirs(args.out_dir, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": args.hidden, "intermediate_size": args.intermediate,
        "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads, "vocab_size": args.vocab,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    gen = torch.Generator(device="cuda").manual_seed(0)
    head_dim = args.hidden // args.heads

    def rand(*shape):
        return (torch.randn(*shape, generator=gen, device="cuda") * 0.02).to(torch.bfloat16).cpu()

    h, i = args.hidden, args.intermediate
    tensors = {
        "model.embed_tokens.weight": rand(args.vocab, h),
        "model.norm.weight": torch.ones(h, dtype=torch.bfloat16),
        "lm_head.weight": rand(args.vocab, h),
    }
    for layer in range(args.layers):
        p = f"model.layers.{layer}."
        tensors[p + "self_attn.q_proj.weight"] = rand(args.heads * head_dim, h)
        tensors[p + "self_attn.k_proj.weight"] = rand(args.kv_heads * head_dim, h)
        tensors[p + "self_attn.v_proj.weight"] = rand(args.kv_heads * head_dim, h)
        tensors[p + "self_attn.o_proj.weight"] = rand(h, args.heads * head_dim)
        tensors[p + "mlp.gate_proj.weight"] = rand(i, h)
        tensors[p + "mlp.up_proj.weight"] = rand(i, h)
        tensors[p + "mlp.down_proj.weight"] = rand(h, i)
        tensors[p + "input_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
        tensors[p + "post_attention_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    save_file(tensors, os.path.join(args.out_dir, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(args.tokenizer, os.path.join(args.out_dir, "tokenizer.model"))
    params = sum(t.numel() for t in tensors.values())
    print(f"make_random_llama: {args.layers} layers, {params / 1e9:.2f} B parameters in {args.out_dir}")


if __name__ == "__main__":
    main()
