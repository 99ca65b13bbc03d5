"""The server modules' conformance records stay out of the runtime's sight until a server command
starts (issue 17; Sources/CLazyConformances).

The executable is linked with lazy-conformances.ld: the protocol-conformance records of the modules
only `serve`, `mcp` and `e2b-local` run (Hummingbird, NIO, MCP, …) go to their own section, which
`sr_register_lazy_conformances()` hands to the Swift runtime before those commands parse their
arguments. Every other command's failed conformance lookups (ArgumentParser makes dozens) then
scan a third fewer records.

What could go wrong, and is checked here on the built binary, record by record:
- a record in the lazy section that another command could need: one that makes a type of a module
  every command uses conform to a protocol of such a module (say, an `extension String:
  CustomDebugStringConvertible` in NIO). A CLI command would not find it. None may exist.
- the section missing or nearly empty (the script's patterns no longer matching the build's object
  paths): the speed-up would be gone without a word.
That the server commands work with the records registered is what Tests/http, Tests/mcp and
Tests/e2b show; without the registration `serve` crashes at start (checked by hand: a segfault in
the runtime), so those suites cannot pass with it missing.
"""
from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build/debug/sandbox-runner")))

# Modules whose code runs in every command: the standard library, Foundation, Dispatch, ours, the
# argument parser. Names as they appear in mangled symbols.
EVERY_COMMAND = {
    "Swift", "_Concurrency", "_StringProcessing", "_RegexParser", "Foundation", "FoundationEssentials",
    "FoundationInternationalization", "FoundationNetworking", "_FoundationCollections", "_FoundationCShims",
    "Dispatch", "Synchronization", "SandboxRunner", "sandbox_runner", "ArgumentParser", "ArgumentParserToolInfo",
}
LAZY_SCRIPT = ROOT / "Sources/CLazyConformances/lazy-conformances.ld"


class Elf:
    """Just enough ELF64 (little-endian) reading: sections, symbols and dynamic relocations."""

    def __init__(self, path: Path):
        self.data = path.read_bytes()
        d = self.data
        assert d[:4] == b"\x7fELF" and d[4] == 2 and d[5] == 1, "not a 64-bit little-endian ELF file"
        shoff, = struct.unpack_from("<Q", d, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
        raw = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize) for i in range(shnum)]
        names = raw[shstrndx]
        self.sections = {}
        for (name, typ, flags, addr, offset, size, link, info, align, entsize) in raw:
            label = d[names[4] + name:d.index(b"\0", names[4] + name)].decode()
            self.sections[label] = {"type": typ, "addr": addr, "offset": offset, "size": size, "link": link,
                                    "entsize": entsize}
        self.raw = raw

    def bytes_at(self, addr: int, n: int) -> bytes:
        for s in self.sections.values():
            if s["type"] != 8 and s["addr"] and s["addr"] <= addr < s["addr"] + s["size"]:
                o = s["offset"] + addr - s["addr"]
                return self.data[o:o + n]
        raise KeyError(hex(addr))

    def symbols(self, table: str) -> list[tuple[int, str]]:
        s = self.sections[table]
        strtab = self.raw[s["link"]]
        out = []
        for i in range(s["size"] // 24):
            name, info, other, shndx, value, size = struct.unpack_from("<IBBHQQ", self.data, s["offset"] + i * 24)
            start = strtab[4] + name
            out.append((value, self.data[start:self.data.index(b"\0", start)].decode(errors="replace")))
        return out

    def relocations(self) -> dict[int, tuple[str | None, int]]:
        """Slot address -> (symbol name or None, addend) for .rela.dyn."""
        dynsym = self.symbols(".dynsym")
        s = self.sections[".rela.dyn"]
        out = {}
        for i in range(s["size"] // 24):
            offset, info, addend = struct.unpack_from("<QQq", self.data, s["offset"] + i * 24)
            sym = info >> 32
            out[offset] = (dynsym[sym][1] if sym else None, addend)
        return out


def module_of(symbol: str) -> str:
    """The module a mangled Swift descriptor symbol belongs to ("Swift" for the stdlib's shortcuts)."""
    s = symbol.split("@")[0]
    assert s.startswith("$s"), symbol
    s = s[2:]
    if s.startswith("s") or (s.startswith("S") and not s.startswith("So")):
        return "Swift"
    if s.startswith("So") or s.startswith("SC"):
        return "__C"
    m = re.match(r"(\d+)", s)
    assert m, symbol
    n = int(m.group(1))
    return s[len(m.group(1)):len(m.group(1)) + n]


def lazy_records(elf: Elf):
    """(protocol symbol, type symbol) for every record of the lazy section."""
    sec = elf.sections["swift5_lazy_conformances"]
    by_addr = {}
    for value, name in elf.symbols(".symtab"):
        if name.startswith("$s") and value:
            by_addr.setdefault(value, name)
    relocs = elf.relocations()

    def pointee(slot: int) -> str:
        sym, addend = relocs[slot]
        return sym if sym else by_addr[addend]

    def relative(addr: int) -> int:
        return addr + struct.unpack("<i", elf.bytes_at(addr, 4))[0]

    out = []
    for i in range(sec["size"] // 4):
        entry = sec["addr"] + 4 * i
        desc = relative(entry)
        raw_protocol = struct.unpack("<i", elf.bytes_at(desc, 4))[0]
        target = desc + (raw_protocol & ~1)
        protocol = pointee(target) if raw_protocol & 1 else by_addr[target]
        flags = struct.unpack("<I", elf.bytes_at(desc + 12, 4))[0]
        kind = (flags >> 3) & 7
        type_target = relative(desc + 4)
        if kind == 0:
            typ = by_addr[type_target]
        elif kind == 1:
            typ = pointee(type_target)
        else:  # Objective-C classes: none on Linux
            typ = "?objc"
        out.append((protocol, typ))
    return out


def test_the_lazy_section_holds_the_server_modules_records():
    elf = Elf(BIN)
    assert "swift5_lazy_conformances" in elf.sections, (
        f"{BIN} has no swift5_lazy_conformances section: the link did not use {LAZY_SCRIPT.name}")
    lazy = elf.sections["swift5_lazy_conformances"]["size"] // 4
    eager = elf.sections["swift5_protocol_conformances"]["size"] // 4
    # MCP alone has ~1,100 records, NIO's modules ~1,000, Hummingbird ~280: a few thousand in all.
    assert lazy > 2500, f"only {lazy} records in the lazy section: the script's patterns no longer match the objects"
    modules = {module_of(t) for _, t in lazy_records(elf) if t.startswith("$s")}
    for expected in ("MCP", "NIOCore", "Hummingbird", "AgentServers", "E2BLocal"):
        assert expected in modules, f"no record of {expected} in the lazy section ({sorted(modules)})"
    for never in ("SandboxRunner", "sandbox_runner", "ArgumentParser"):
        assert never not in modules, f"{never}'s records are in the lazy section: the CLI would not find them"
    assert eager > 0


def test_no_lazy_record_is_one_a_cli_command_could_need():
    records = lazy_records(Elf(BIN))
    needed = [(p, t) for p, t in records
              if module_of(p) in EVERY_COMMAND and (t.startswith("$s") and module_of(t) in EVERY_COMMAND)]
    assert needed == [], "records every command may look up, kept from the runtime until a server command starts:\n" + \
        "\n".join(f"  {t} : {p}" for p, t in needed[:20])


def test_only_the_cli_commands_go_without_the_records():
    """The list in SandboxRunnerCommand names real subcommands, none of them a server."""
    source = (ROOT / "Sources/sandbox-runner/SandboxRunnerCommand.swift").read_text()
    listed = re.search(r"withoutServerModules: Set<String> = \[(.*?)\]", source, re.S).group(1)
    names = set(re.findall(r'"([^"]+)"', listed))
    assert not names & {"serve", "mcp", "e2b-local", "help"}, names
    for name in names - {"--version"}:
        r = subprocess.run([str(BIN), name, "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "USAGE: sandbox-runner " + name in r.stdout, f"{name} is not a subcommand: {r.stderr}"
