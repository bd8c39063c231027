"""Tiny random HuggingFace models, built at test time, for fast engine tests.

No hub access exists here, and real models are slow, so tests build their own:
a few MB each, in seconds, identical on every run (seeded weights, a tokenizer
trained by ``tokenizers`` on the fixed English text below). Each builder
writes a folder that both transformers and vLLM (CPU) load:

* head_dim 32 or more (vLLM's CPU attention supports 32, 64, 80, ...);
* float32 weights for Llama and Qwen2, so HF-vs-vLLM parity can be tight;
* Qwen3-Next in bf16 with linear (GDN) head dims 128, the only setting vLLM's
  CPU GDN kernels accept (see ../shared/FACTS.md);
* ``max_position_embeddings`` 2048, so long-context and chunking tests fit.

The tokenizer is byte-level BPE (never an unknown token) that adds BOS, the
way Llama's does, so "skip the first position" tests see a real BOS. Its
vocabulary is padded with unused special tokens to exactly ``vocab`` entries,
so every id a random model can emit decodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["build_tiny_llama", "build_tiny_qwen2", "build_tiny_qwen3_next", "TRAINING_TEXT", "CHAT_TEMPLATE"]

SEED = 1234
BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TRAINING_TEXT = """\
The morning was quiet and the river ran slowly past the old mill. She opened the window and
felt the cold air on her face. Nothing had happened yet, but everything was about to change.
I am so happy today! We finally finished the project and everyone was proud of the result.
He was furious when he found out that the letter had been opened without his permission.
They were afraid of the dark forest, and the sound of footsteps made them tremble with fear.
What a wonderful surprise: my old friend came to visit after ten years abroad.
The news was sad; the small shop on the corner closed after forty years of business.
Please remember to water the plants, feed the cat, and lock the door before you leave.
It is disgusting that the kitchen was left dirty again, with food rotting in the sink.
We laughed together for hours, telling stories about the summer we spent by the sea.
The committee will meet on Tuesday at three o'clock to discuss the budget for next year.
I feel calm and relaxed after a long walk in the park under the tall green trees.
Why did you not tell me? I trusted you, and now I feel hurt and betrayed.
The children were excited about the trip to the museum, where they saw dinosaur bones.
Rain fell all night. In the morning the streets were wet and the sky was grey and heavy.
Thank you for your help; I could not have done it without you, and I am very grateful.
The price of bread rose again, and many families worried about how to pay their bills.
A gentle breeze moved the curtains while the kettle began to sing on the stove.
Numbers like 1, 2, 3, 10, 42, 100 and 2048 appear in ordinary text, as do dates like 2026.
Questions, answers, lists; quotes "like this" and (parentheses) help the tokenizer learn.
Love, joy, anger, fear, sadness, surprise, disgust, trust, hope, shame, pride and calm.
The engineer measured the signal twice, wrote down the result, and checked it once more.
An old dog slept in the sun, and a young cat watched the birds from the garden wall.
Tomorrow we will travel north by train, through fields, villages and snowy mountains.
"""


def _train_tokenizer(vocab: int) -> Any:
    """A byte-level BPE tokenizer with exactly ``vocab`` ids, as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [UNK, BOS, EOS, PAD, IM_START, IM_END]
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXT.splitlines(), trainer=trainer)
    extra = vocab - tok.get_vocab_size()
    if extra < 0:
        raise ValueError(f"vocab={vocab} is smaller than the byte alphabet plus specials")
    # Pad to exactly `vocab` so the embedding and the tokenizer agree on every id.
    tok.add_special_tokens([f"<|extra_{i}|>" for i in range(extra)])
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
    )
    fast.chat_template = CHAT_TEMPLATE
    assert len(fast) == vocab, (len(fast), vocab)
    return fast


def _save(config: Any, path: Path, vocab: int, dtype: str) -> Path:
    """Build a seeded random model for ``config`` and save it with a fresh tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab)
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # A larger init than HF's 0.02 keeps a random model from being nearly
    # constant, so parity tests compare vectors that actually differ.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.1)
    model = model.to(torch_dtype).eval()
    model.generation_config.do_sample = False
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_llama(
    path: Path,
    *,
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    vocab: int = 512,
    context: int = 2048,
) -> Path:
    """A random float32 ``LlamaForCausalLM`` (head_dim = hidden // heads >= 32, context ``context``) in ``path``."""
    from transformers import LlamaConfig

    _check_head_dim(hidden, heads)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=context,
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
    )
    return _save(config, path, vocab, "float32")


def build_tiny_qwen2(
    path: Path,
    *,
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    vocab: int = 512,
) -> Path:
    """A random float32 ``Qwen2ForCausalLM`` (q/k/v biases, like real Qwen2) in ``path``.

    Note: with ``model_type`` qwen2, AutoTokenizer may swap in Qwen's own
    pre-tokenizer, so always tokenize through AutoTokenizer or vLLM, never the
    raw ``tokenizers`` object.
    """
    from transformers import Qwen2Config

    _check_head_dim(hidden, heads)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        use_sliding_window=False,
        architectures=["Qwen2ForCausalLM"],
    )
    return _save(config, path, vocab, "float32")


def build_tiny_qwen3_next(path: Path, *, vocab: int = 512) -> Path:
    """A random bf16 ``Qwen3NextForCausalLM``: 3 linear-attention (GDN) layers + 1 full-attention layer.

    The hybrid layer family of the production target (Qwen3.5); vLLM's CPU GDN
    kernels need bf16 and linear key/value head dims of 128, hence those values.
    Every token goes to all 4 experts (top-k = number of experts): with top-2 of
    4, bf16 rounding that differs between CPUs (AVX2 vs AVX-512 kernels) flipped
    random expert choices and moved a capture-vs-HF cosine from 0.999 to 0.986;
    with all experts chosen the routing weights are continuous and nothing flips.
    """
    from transformers import Qwen3NextConfig

    config = Qwen3NextConfig(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        linear_num_key_heads=2,
        linear_num_value_heads=2,
        linear_key_head_dim=128,
        linear_value_head_dim=128,
        linear_conv_kernel_dim=4,
        num_experts=4,
        num_experts_per_tok=4,
        moe_intermediate_size=64,
        shared_expert_intermediate_size=64,
        decoder_sparse_step=1,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        architectures=["Qwen3NextForCausalLM"],
    )
    return _save(config, path, vocab, "bfloat16")


def _check_head_dim(hidden: int, heads: int) -> None:
    if hidden % heads or hidden // heads < 32:
        raise ValueError(f"hidden={hidden}, heads={heads}: head_dim must be an integer >= 32 for vLLM's CPU attention")
