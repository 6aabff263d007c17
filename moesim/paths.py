"""Where the built-in data lives, in a source checkout and in an installed package."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_DIR = _PACKAGE_DIR.parent

# kind -> (folder in a source checkout, folder inside the installed package)
_LOCATIONS = {
    "models": (_PACKAGE_DIR / "models" / "library", _PACKAGE_DIR / "models" / "library"),
    "hardware_profiles": (_REPO_DIR / "hardware_profiles", _PACKAGE_DIR / "_data" / "hardware_profiles"),
    "scenarios": (_REPO_DIR / "scenarios", _PACKAGE_DIR / "_data" / "scenarios"),
}


def builtin_dir(kind: str) -> Path:
    """The folder of built-in files of `kind`: the checkout's top-level folder when present."""
    checkout, installed = _LOCATIONS[kind]
    return checkout if checkout.is_dir() else installed


def builtin_names(kind: str) -> list[str]:
    """Names of the built-in files of `kind` (file stems), sorted."""
    directory = builtin_dir(kind)
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.iterdir() if p.suffix in (".toml", ".yaml", ".yml", ".json"))


# Longest path the readers and writers accept (Linux PATH_MAX is 4096 bytes, NAME_MAX 255).
MAX_PATH_CHARS = 4095
# Largest input file read (scenario, profile, model, config.json, routing histogram, results JSONL).
MAX_INPUT_BYTES = 256 * 2**20


def short(path: object, limit: int = 80) -> str:
    """`path` for a one-line message: '' when empty, cut to `limit` characters when longer."""
    text = "" if path is None else str(path)
    if not text:
        return "''"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def path_problem(path: Path) -> str | None:
    text = str(path)
    if not text or text == ".":
        return "empty path"
    if len(text) > MAX_PATH_CHARS or any(len(part) > 255 for part in path.parts):
        return f"path too long ({len(text)} characters; allowed: up to {MAX_PATH_CHARS}, 255 per name)"
    if "\0" in text:
        return "path holds a NUL character"
    return None


def read_text_file(path: str | Path, *, field: str | None = None) -> str:
    """The UTF-8 text of `path`; a missing file, a directory, unreadable or non-UTF-8 bytes are SpecErrors."""
    from moesim.errors import SpecError

    p = Path(path)
    data = read_bytes_file(p, field=field)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise SpecError(f"not UTF-8 text (byte {err.start}, line {line})", file=str(p), field=field) from None


def read_bytes_file(path: str | Path, *, field: str | None = None) -> bytes:
    """The bytes of the regular file `path` (at most MAX_INPUT_BYTES); every failure a SpecError naming it."""
    from moesim.errors import SpecError

    p = Path(path)
    problem = path_problem(p)
    if problem:
        raise SpecError(f"cannot read: {problem}", file=short(path), field=field)
    if p.is_dir():
        inside = " (a HuggingFace checkpoint folder: give its config.json)" if (p / "config.json").is_file() else ""
        raise SpecError(f"is a directory, not a file{inside}", file=str(p), field=field)
    if p.exists() and not p.is_file():
        raise SpecError("not a regular file (a device, a pipe or a socket)", file=str(p), field=field)
    try:
        with open(p, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise SpecError("no such file", file=str(p), field=field) from None
    except OSError as err:
        raise SpecError(f"cannot read file: {err.strerror or err}", file=str(p), field=field) from None
    if len(data) > MAX_INPUT_BYTES:
        raise SpecError(f"larger than {MAX_INPUT_BYTES // 2**20} MiB: not an input file moesim reads", file=str(p),
                        field=field)
    return data


def check_output_path(path: str | Path | None, *, field: str) -> Path:
    """`path` as a file moesim may write: not empty, not a directory, its folder existing; else a SpecError."""
    from moesim.errors import SpecError

    p = Path(path) if path is not None else Path("")
    problem = path_problem(p) if path is not None and str(path) else "empty path"
    if problem:
        raise SpecError(f"cannot write: {problem}", file=short(path), field=field)
    if p.is_dir():
        raise SpecError("cannot write: is a directory, not a file", file=str(p), field=field)
    parent = p.parent
    if not parent.exists():
        raise SpecError(f"cannot write: folder {parent} does not exist", file=str(p), field=field)
    if not parent.is_dir():
        raise SpecError(f"cannot write: {parent} is not a folder", file=str(p), field=field)
    if p.is_file():  # a shipped scenario, profile or model: every later use of its built-in name would read the output
        real = p.resolve()  # a link to a shipped file is that file
        shipped = [kind for kind in _LOCATIONS if builtin_dir(kind).resolve() == real.parent]
        if (shipped and real.suffix in (".toml", ".yaml", ".yml", ".json") and real.stem in builtin_names(shipped[0])
                and not written_by_calibrate(real)):
            raise SpecError(f"cannot write: is the shipped {shipped[0].rstrip('s').replace('_', ' ')} '{real.stem}'; "
                            "name a new file", file=str(p), field=field)
    _probe_writable(p, field=field)
    return p


def _probe_writable(p: Path, *, field: str) -> None:
    """A file can be made in `p`'s folder and `p`, if there, opened for writing: else a SpecError now, before the
    command's work (a calibration's fit, a simulation) is done and then lost. The folder's permission bits do not
    tell (root ignores them; /sys refuses root): a probe file is made and removed."""
    import errno
    import os

    from moesim.errors import SpecError

    try:
        if p.exists() and not p.is_file():  # a device or a pipe (/dev/null, /dev/stdout): written in place
            if not os.access(p, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return
        if p.exists():
            os.close(os.open(p, os.O_WRONLY))  # neither truncated nor changed
        probe = _temp_name(p, "probe")
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as err:
        raise SpecError(f"cannot write: {err.strerror or err}", file=str(p), field=field) from None


def _temp_name(p: Path, what: str) -> Path:
    import os

    return p.with_name(f".{p.name}.{what}-{os.getpid()}")


def written_by_calibrate(path: Path) -> bool:
    """Whether `path` is a profile `moesim calibrate` wrote (a top-level `calibrated_from`; no shipped profile has
    one): writing it again, into the profiles folder too, is a recalibration, not an overwrite of shipped data."""
    try:
        with open(path, "rb") as handle:
            return any(line.startswith(b"calibrated_from") for line in handle.read(1 << 20).splitlines())
    except OSError:
        return False


def write_text_file(path: str | Path, text: str, *, field: str) -> Path:
    """Write `text` to `path` (checked as `check_output_path`) whole or not at all: into a file beside it, then
    renamed over it, so that a failed write (full disk, no permission) leaves a file already there as it was. An
    OSError is a SpecError naming the file and `field`. A link is written through to the file it names."""
    import os

    from moesim.errors import SpecError

    p = check_output_path(path, field=field)
    target = p.resolve() if p.is_symlink() else p
    if target.exists() and not target.is_file():  # a device or a pipe (/dev/null): written in place, never replaced
        try:
            with open(target, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        except OSError as err:
            raise SpecError(f"cannot write: {err.strerror or err}", file=str(p), field=field) from None
        return p
    temp = _temp_name(target, "partial")
    try:
        with open(temp, "x", encoding="utf-8", newline="") as handle:
            handle.write(text)
        if target.exists():
            os.chmod(temp, target.stat().st_mode & 0o7777)  # the file keeps its permissions
        os.replace(temp, target)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise SpecError(f"cannot write: {err.strerror or err}", file=str(p), field=field) from None
    return p


def parse_json_text(text: str, *, file: str, field: str | None = None):
    """`json.loads(text)`; syntax errors and nesting too deep to parse are SpecErrors naming the file."""
    import json

    from moesim.errors import SpecError

    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"not valid JSON ({err.msg} at line {err.lineno})", file=file, field=field) from None
    except RecursionError:
        raise SpecError("not valid JSON here: nested too deeply", file=file, field=field) from None


def read_versioned_toml(path: str | Path, version: int = 1) -> dict:
    """A TOML data file whose `schema_version` must equal `version`; bad text, bad TOML or another version
    are SpecErrors naming the file."""
    import tomllib

    from moesim.errors import SpecError

    p = Path(path)
    try:
        data = tomllib.loads(read_text_file(p))
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"not valid TOML: {' '.join(str(err).split())}", file=str(p)) from None
    if data.get("schema_version") != version:
        raise SpecError("unsupported schema_version", file=str(p), field="schema_version",
                        value=data.get("schema_version"), allowed=(version,))
    return data
