"""ONNX Runtime's channel block on this CPU, and which convolutions of a pruned model it pads
(the note `lnpt bench-latency` prints instead of leaving the shortfall to --profile)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from lnpt.export.blocks import cpu_flags, nchwc_block, padded_convolutions, padding_note
from lnpt.models import create_model
from lnpt.surgery.channels import ChannelGraph

SHAPE = (1, 28, 28)


def _resnet20_half() -> nn.Module:
    """ResNet-20 at layer-wise channel ratio 0.5 rounded to 8: stage widths 8/16/32."""
    model = create_model("resnet20", SHAPE, 10, 1.0, seed=0)
    graph = ChannelGraph(model, SHAPE)
    graph.remove({g.root: list(range(g.size // 2, g.size)) for g in graph.groups()})
    return model


def test_cpu_flags_reads_the_first_processor(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx2", "avx512f"}
    (tmp_path / "none").write_text("processor\t: 0\nFeatures\t: neon asimd\n")
    assert cpu_flags(tmp_path / "none") is None
    assert cpu_flags(tmp_path / "missing") is None


def test_block_follows_the_instruction_set() -> None:
    assert nchwc_block({"avx2", "fma", "avx512f"}, "x86_64") == (16, "AVX-512")
    assert nchwc_block({"avx2", "fma"}, "x86_64") == (8, "AVX2")
    assert nchwc_block({"sse2"}, "AMD64") == (8, "SSE/AVX")
    assert nchwc_block({"avx512f"}, "aarch64") is None   # depends on the build there: no claim
    found = nchwc_block()
    assert found is None or found[0] in (8, 16)


def test_padded_convolutions_are_the_first_stage_on_avx512_only() -> None:
    model = _resnet20_half()
    padded = padded_convolutions(model, 16)
    assert padded and {c for _, c in padded} == {8}
    stage1 = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.out_channels == 8]
    assert [n for n, _ in padded] == stage1 and len(stage1) == 7   # stem + 3 blocks x 2 convs
    assert padded_convolutions(model, 8) == []
    dense = create_model("resnet20", SHAPE, 10, 1.0, seed=0)
    assert padded_convolutions(dense, 16) == []
    depthwise = nn.Sequential(nn.Conv2d(16, 16, 3, groups=16), nn.Conv2d(16, 12, 1))
    assert padded_convolutions(depthwise, 8) == [("1", 12)]


def test_padding_note_only_when_something_is_padded() -> None:
    model = _resnet20_half()
    note = padding_note(model, (16, "AVX-512"))
    assert note is not None
    assert "blocks of 16 channels" in note and "7 of the pruned model's 21 convolutions have 8 output channels" in note
    assert padding_note(model, (8, "AVX2")) is None
    assert padding_note(model, None) is None
