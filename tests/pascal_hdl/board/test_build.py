"""``pascal-ref bitstream``: argument validation, folder containment, the board tops and the placeholder
RTLIL (fast), and the full iCEBreaker and ULX3S 25F builds with the weight swap checked byte for byte
against a full rebuild (slow, ``--runslow``)."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import re

import numpy as np
import pytest

from pascal_hdl.board import build
from pascal_hdl.board.build import (BOARDS, MANIFEST_FORMAT, MANIFEST_NAME, BitstreamError, placeholder_words,
                                    register_bitstream)
from pascal_ref.cli import CommandError

UP5K_MLP_LANES = 4
"""Lanes of the digits MLP on the iCEBreaker: with every weight/parameter memory in block RAM (the swap
needs it) the default lanes (8 hidden, 10 readout) need more than the UP5K's 30 block RAMs."""


def parse(argv):
    parser = argparse.ArgumentParser(prog="pascal-ref")
    register_bitstream(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bitstream", *argv])


def run(argv):
    args = parse(argv)
    return args.handler(args)


def permuted_mlp(path, seed=7):
    """The bundled digits MLP with its hidden units permuted: the same design (every width and range is
    the same), other memory contents, the same function."""
    from pascal_ref.cli.common import load_model
    from pascal_ref.io.fileformat import save
    from pascal_ref.ir.network import Network

    network = load_model("digits-mlp")
    fc1, act1, fc2 = network.layers
    order = np.random.default_rng(seed).permutation(fc1.weight.shape[0])
    layers = [dataclasses.replace(fc1, weight=fc1.weight[order], bias=fc1.bias[order]), act1,
              dataclasses.replace(fc2, weight=fc2.weight[:, order])]
    save(Network(network.input_shape, layers, input_levels=network.input_levels, name="digits_mlp_permuted"), path)
    return str(path)


def config_of(model, lanes=UP5K_MLP_LANES, layer_lanes=None):
    return build._quantize(model, lanes, layer_lanes, 8, False)[1]


@functools.lru_cache(maxsize=None)
def design_of(board, model="digits-mlp", lanes=UP5K_MLP_LANES, baud=115200):
    """``(files, memories, identity)`` of the board top (elaborated once per case: about 1.5 s each)."""
    return build._design(BOARDS[board], config_of(model, lanes), build.identity_name(model.replace("-", "_")), baud)


# -- arguments

def test_arguments_are_validated():
    with pytest.raises(SystemExit):
        parse(["digits-mlp", "-o", "x", "--board", "arty"])          # not a board we build for
    with pytest.raises(SystemExit):
        parse(["digits-mlp", "-o", "x", "--board", "icebreaker", "--seed", "-1"])
    with pytest.raises(SystemExit):
        parse(["digits-mlp", "-o", "x", "--board", "icebreaker", "--baud", "12"])
    with pytest.raises(SystemExit):
        parse(["digits-mlp", "--board", "icebreaker"])                # -o is required
    args = parse(["digits-mlp", "-o", "x", "--board", "ulx3s-85f", "--layer-lanes", "act1=2,fc2=5"])
    assert args.board == "ulx3s-85f" and args.layer_lanes == {"act1": 2, "fc2": 5} and args.swap is None


def test_board_or_swap_is_required(tmp_path):
    with pytest.raises(CommandError, match="--board is required"):
        run(["digits-mlp", "-o", str(tmp_path / "out")])
    with pytest.raises(CommandError, match="--swap takes the board and every setting.*--board, --lanes"):
        run(["digits-mlp", "-o", str(tmp_path / "out"), "--swap", str(tmp_path), "--board", "icebreaker",
             "--lanes", "2"])
    assert not (tmp_path / "out").exists()


def test_unknown_board_and_bad_seed_in_the_library():
    with pytest.raises(BitstreamError, match="unknown board 'arty'"):
        build.build_bitstream("digits-mlp", "arty", "unused")
    with pytest.raises(BitstreamError, match="seed must be an integer"):
        build.build_bitstream("digits-mlp", "icebreaker", "unused", seed=2 ** 31)


def test_fmax_below_the_board_clock_is_refused():
    build._check_fmax(BOARDS["icebreaker"], 12.5)
    with pytest.raises(BitstreamError, match="Fmax 11.90 MHz is below the board clock 12 MHz"):
        build._check_fmax(BOARDS["icebreaker"], 11.9)
    with pytest.raises(BitstreamError, match="below the board clock 25 MHz"):
        build._check_fmax(BOARDS["ulx3s-25f"], 24.99)


# -- folders

def test_a_non_empty_folder_that_is_no_bitstream_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="exists, is not empty and is not a bitstream folder"):
        run(["digits-mlp", "-o", str(tmp_path), "--board", "icebreaker"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BitstreamError, match="not a bitstream folder"):
        build._check_output_folder(tmp_path)


def test_a_previous_bitstream_folder_is_accepted_and_links_are_refused(tmp_path):
    folder = tmp_path / "previous"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_text(json.dumps({"format": MANIFEST_FORMAT}))
    build._check_output_folder(folder)                                    # no error
    (folder / "top.bin").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(BitstreamError, match="top.bin is a symbolic link"):
        build._check_output_folder(folder)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target", target_is_directory=True)
    with pytest.raises(BitstreamError, match="is a symbolic link"):
        build._check_output_folder(link)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BitstreamError, match="is not a folder"):
        build._check_output_folder(tmp_path / "file")


def test_a_new_run_clears_what_a_previous_one_left(tmp_path):
    """No stale bitstream (another board's top.bin, an old image) stays beside a new build; until the run
    ends the folder says it holds no finished bitstream, and a swap refuses it."""
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": MANIFEST_FORMAT, "status": "built"}))
    for name in ("top.bin", "mem07.hex", "mem07.placeholder.hex", "nextpnr.log"):
        (tmp_path / name).write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    build._check_output_folder(tmp_path)
    build._mark_incomplete(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, "notes.txt"]
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["status"] == "incomplete"
    with pytest.raises(BitstreamError, match="holds no finished bitstream"):
        build.swap_weights("digits-mlp", tmp_path, tmp_path / "out")


def test_swap_refuses_a_folder_without_manifest_a_changed_design_and_its_own_folder(tmp_path):
    with pytest.raises(BitstreamError, match="no bitstream.json"):
        build.swap_weights("digits-mlp", tmp_path, tmp_path / "out")
    source = tmp_path / "source"
    source.mkdir()
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "status": "built", "board": "icebreaker", "baud": 115200,
                "seed": 1,
                "settings": {"lanes": 4, "layer_lanes": None, "weight_bits": 8, "per_layer_threshold": False},
                "files": {"top.placeholder.asc": hashlib.sha256(b"placed").hexdigest()}}
    (source / MANIFEST_NAME).write_text(json.dumps(manifest))
    (source / "top.placeholder.asc").write_bytes(b"placed, then changed")
    with pytest.raises(BitstreamError, match="top.placeholder.asc does not match the SHA-256"):
        build.swap_weights("digits-mlp", source, tmp_path / "out")
    (source / "top.placeholder.asc").write_bytes(b"placed")
    with pytest.raises(BitstreamError, match="give one other than"):
        build.swap_weights("digits-mlp", source, source)
    for bad in ({"settings": {"lanes": "4"}}, {"board": "arty"}, {"baud": "fast"}, {"version": 2}):
        (source / MANIFEST_NAME).write_text(json.dumps(manifest | bad))
        with pytest.raises(BitstreamError, match="malformed|unknown board|not a pascal-bitstream version 1"):
            build.swap_weights("digits-mlp", source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_swap_refuses_a_model_of_another_design(tmp_path):
    """A model whose design differs (here the digits CNN into an MLP folder) is refused with one line that
    names the first difference, before anything is written."""
    files = design_of("icebreaker")[0]
    source = tmp_path / "source"
    source.mkdir()
    (source / "top.placeholder.asc").write_bytes(b"placed")
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "status": "built", "board": "icebreaker", "baud": 115200,
                "seed": 1,
                "settings": {"lanes": UP5K_MLP_LANES, "layer_lanes": None, "weight_bits": 8,
                             "per_layer_threshold": False},
                "files": {"top.placeholder.asc": hashlib.sha256(b"placed").hexdigest()},
                "design_sha256": hashlib.sha256(files["top.il"].encode()).hexdigest(),
                "shape": build._shape(config_of("digits-mlp"))}
    (source / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BitstreamError,
                       match=r"model 'digits-cnn' cannot be swapped into .*: 5 stages, the bitstream's design has 2"):
        build.swap_weights("digits-cnn", source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    manifest["shape"][0]["lanes"] = 8                       # a folder built with other lanes
    manifest["design_sha256"] = "0" * 64
    (source / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BitstreamError, match="stage 'act1': lanes 4, the bitstream's 8"):
        build.swap_weights(permuted_mlp(tmp_path / "perm.npz"), source, tmp_path / "out")


# -- the design without place and route

def test_identity_names_never_carry_paths_or_spaces():
    assert build.identity_name("../../etc/passwd") == "etc_passwd"
    assert build.identity_name("a b\x1b[31m") == "a_b_31m"
    assert build.identity_name("x" * 40) == "x" * 32
    assert build.identity_name("...") == "model"


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_top_elaborates_with_its_pins_clock_and_placeholders(board):
    spec = BOARDS[board]
    files, memories, identity = design_of(board)
    assert identity.clk_freq == spec.clock_hz and identity.name == "digits_mlp"
    block = build.PLACEHOLDER_BLOCK[spec.family]
    if spec.family == "ice40":
        pins = files["top.pcf"]
        for line in ("set_io clk12_0__io 35", "set_io uart_0__rx__io 6", "set_io uart_0__tx__io 9",
                     "set_io button_0__io 10", "set_frequency clk12_0__io 12.0"):
            assert line in pins
    else:
        pins = files["top.lpf"]
        for line in ('LOCATE COMP "clk25_0__io" SITE "G2"', 'LOCATE COMP "uart_0__rx__io" SITE "M1"',
                     'LOCATE COMP "uart_0__tx__io" SITE "L4"', 'LOCATE COMP "button_pwr_0__io" SITE "D6"',
                     'FREQUENCY PORT "clk25_0__io" 25000000'):
            assert line in pins
    rtlil = files["top.il"]
    assert "/work/" not in rtlil and ".py:" not in rtlil          # no source paths (emit_src=False)
    names = [entry["name"] for entry in memories]
    assert names == ["act1.weights", "act1.params", "fc2.weights", "fc2.params", "identity"]
    for entry in memories:
        assert entry["padded_depth"] % block == 0 and entry["padded_depth"] >= max(entry["depth"], block)
        assert entry["swappable"]                                     # every width of this design is a multiple of 4
        declared = re.findall(rf"memory width {entry['width']} size (\d+) \\{entry['memory']}\n", rtlil)
        assert str(entry["padded_depth"]) in declared
        words = placeholder_words(entry["index"], entry["name"], entry["width"], entry["padded_depth"])
        assert f"{entry['width'] * entry['padded_depth']}'{build._bits(words, entry['width'])}" in rtlil
        assert f"'{build._bits(entry['words'], entry['width'])}\n" not in rtlil   # the real contents are gone


def test_the_design_digest_sees_the_design_but_not_the_weights(tmp_path):
    spec = BOARDS["icebreaker"]
    first = design_of("icebreaker")
    other = build._design(spec, config_of(permuted_mlp(tmp_path / "perm.npz")), "digits_mlp_permuted", 115200)
    assert first[0]["top.il"] == other[0]["top.il"]                 # equal RTLIL: the swap is exact
    assert [m["words"] for m in first[1]] != [m["words"] for m in other[1]]
    assert first[2].digest != other[2].digest and first[2].name != other[2].name
    lanes = design_of("icebreaker", lanes=2)
    baud = design_of("icebreaker", baud=1_000_000)
    assert lanes[0]["top.il"] != first[0]["top.il"] and baud[0]["top.il"] != first[0]["top.il"]


def test_placeholders_are_fixed_and_every_bit_slice_is_unique():
    """icebram/ecpbram find a memory by its 256/512-word bit slices: every slice of every placeholder of a
    design must differ from every other (and from an all-zero slice), or a swap would be ambiguous."""
    assert placeholder_words(3, "fc2.params", 140, 256) == placeholder_words(3, "fc2.params", 140, 256)
    assert placeholder_words(3, "fc2.params", 140, 256) != placeholder_words(2, "fc2.params", 140, 256)
    for model, layer_lanes in (("digits-mlp", None), ("digits-cnn", {"act1": 4, "act2": 6, "fc": 5})):
        for family, block in build.PLACEHOLDER_BLOCK.items():
            config = config_of(model, lanes=None, layer_lanes=layer_lanes)
            slices = set()
            count = 0
            for entry in build.swappable_memories(config, bytes(83), block):
                words = np.array(placeholder_words(entry["index"], entry["name"], entry["width"],
                                                   entry["padded_depth"]), dtype=object)
                for bit in range(entry["width"]):
                    column = [(int(w) >> bit) & 1 for w in words]
                    for start in range(0, len(column), block):
                        slices.add(tuple(column[start:start + block]))
                        count += 1
            assert len(slices) == count and tuple([0] * block) not in slices


def test_a_width_that_is_not_a_multiple_of_4_is_kept_in_the_design():
    """The digits CNN's act2 params (126 bits) and fc params (85 bits) cannot be written as hex digits for
    icebram: they keep their real contents (and the manifest says so)."""
    config = config_of("digits-cnn", lanes=None, layer_lanes={"act1": 4, "act2": 6, "fc": 5})
    memories = build.swappable_memories(config, bytes(83))
    kept = {entry["name"] for entry in memories if not entry["swappable"]}
    assert kept == {entry["name"] for entry in memories if entry["width"] % 4} and "fc.params" in kept
    files, memories, _ = build._design(BOARDS["icebreaker"], config, "digits_cnn", 115200)
    for entry in memories:
        real = f"'{build._bits(entry['words'], entry['width'])}\n"
        assert (real in files["top.il"]) == (not entry["swappable"])


def test_ice40_slices_read_a_ram_block_as_icebram_does():
    """A 256 x 16 image laid out in one .ram_data block (row r, bit b at bit 16 r + b of the block, the
    last line first, as icebram reads it): its 16 column slices are found, a changed word is not."""
    words = placeholder_words(0, "test", 16, 256)
    value = sum(((word >> bit) & 1) << (16 * row + bit) for row, word in enumerate(words) for bit in range(16))
    digits = f"{value:01024x}"
    rows = [digits[k * 64:(k + 1) * 64] for k in range(16)]
    asc = "\n".join([".comment x", ".ram_data 6 1", *reversed(rows), ".logic_tile 1 1", ""])
    found = build.ice40_slices(asc)
    assert all(piece in found for piece in build.column_slices(words, 16, 256))
    other = list(words)
    other[5] ^= 1
    assert build.column_slices(other, 16, 256)[0] not in found


# -- the full build (slow)

def carries_images(folder, memories, family="ice40"):
    """Whether the built design of ``folder`` (``top.asc``, ECP5: ``top.config``) holds every bit slice of
    every real image and none of the placeholders, which its placed design (``top.placeholder.*``) held
    all of (the slices as icebram/ecpbram cut them, read out of the block RAM contents)."""
    block = build.PLACEHOLDER_BLOCK[family]
    suffix, slices = ("asc", build.ice40_slices) if family == "ice40" else ("config", build.ecp5_slices)
    placed = slices((folder / f"top.placeholder.{suffix}").read_text())
    built = slices((folder / f"top.{suffix}").read_text())
    for entry in memories:
        placeholder = build.column_slices(placeholder_words(entry["index"], entry["name"], entry["width"],
                                                            entry["padded_depth"]), entry["width"], block)
        assert all(piece in placed for piece in placeholder), entry["name"]
        if any(piece in built for piece in placeholder):
            return False
        if not all(piece in built for piece in build.column_slices(entry["words"], entry["width"], block)):
            return False
    return True


@pytest.mark.slow
@pytest.mark.synth
def test_icebreaker_build_and_weight_swap_equal_a_full_rebuild(tmp_path):
    first, swapped, rebuilt = tmp_path / "first", tmp_path / "swapped", tmp_path / "rebuilt"
    other = permuted_mlp(tmp_path / "perm.npz")
    assert run(["digits-mlp", "--board", "icebreaker", "-o", str(first), "--lanes", str(UP5K_MLP_LANES)]) == 0
    manifest = json.loads((first / MANIFEST_NAME).read_text())
    report = manifest["report"]
    assert report["fits"] and report["fmax_mhz"] >= 12 and report["ram_blocks"] <= 30
    assert len((first / "top.bin").read_bytes()) == 104_090
    assert all(entry["swappable"] for entry in manifest["memories"])
    assert run([other, "--swap", str(first), "-o", str(swapped)]) == 0
    assert run([other, "--board", "icebreaker", "-o", str(rebuilt), "--lanes", str(UP5K_MLP_LANES)]) == 0
    assert (swapped / "top.bin").read_bytes() == (rebuilt / "top.bin").read_bytes()
    assert (swapped / "top.bin").read_bytes() != (first / "top.bin").read_bytes()
    assert (rebuilt / "top.placeholder.asc").read_bytes() == (first / "top.placeholder.asc").read_bytes()
    swapped_manifest = json.loads((swapped / MANIFEST_NAME).read_text())
    rebuilt_manifest = json.loads((rebuilt / MANIFEST_NAME).read_text())
    assert swapped_manifest["model"]["weight_digest"] == rebuilt_manifest["model"]["weight_digest"]
    assert swapped_manifest["model"]["weight_digest"] != manifest["model"]["weight_digest"]
    memories = build._design(BOARDS["icebreaker"], config_of(other), "digits_mlp_permuted", 115200)[1]
    assert carries_images(swapped, memories)
    assert not carries_images(first, memories)          # the first bitstream holds the other weights


@pytest.mark.slow
@pytest.mark.synth
def test_ulx3s_25f_build_and_weight_swap_equal_a_full_rebuild(tmp_path):
    """ECP5 (ecpbram on the text config, then ecppack): the swapped bitstream is the bytes of a full
    rebuild with the other weights; about 3 minutes (two 25F builds and a swap)."""
    first, swapped, rebuilt = tmp_path / "first", tmp_path / "swapped", tmp_path / "rebuilt"
    other = permuted_mlp(tmp_path / "perm.npz")
    lanes = str(UP5K_MLP_LANES)
    assert run(["digits-mlp", "--board", "ulx3s-25f", "-o", str(first), "--lanes", lanes]) == 0
    manifest = json.loads((first / MANIFEST_NAME).read_text())
    assert manifest["report"]["fits"] and manifest["report"]["fmax_mhz"] >= 25
    assert all(entry["swappable"] for entry in manifest["memories"])
    assert run([other, "--swap", str(first), "-o", str(swapped)]) == 0
    assert run([other, "--board", "ulx3s-25f", "-o", str(rebuilt), "--lanes", lanes]) == 0
    assert (swapped / "top.bit").read_bytes() == (rebuilt / "top.bit").read_bytes()
    assert (swapped / "top.bit").read_bytes() != (first / "top.bit").read_bytes()
    assert (rebuilt / "top.placeholder.config").read_bytes() == (first / "top.placeholder.config").read_bytes()
    memories = build._design(BOARDS["ulx3s-25f"], config_of(other), "digits_mlp_permuted", 115200)[1]
    assert carries_images(swapped, memories, "ecp5")
    assert not carries_images(first, memories, "ecp5")
