"""Bounding what a pickle from a user may allocate, before it is unpickled.

An allow-list of globals (torch's ``weights_only`` unpickler, our restricted unpicklers) stops code
execution but not memory bombs: an 823-byte pickle of ``bytearray(20_000_000_000)`` only uses
allowed names, and so does a list that calls ``_codecs.encode`` a million times on one memoized
megabyte string. :func:`check_pickle_stream` walks the opcodes (``pickletools.genops``, which never
calls anything) on a model of the unpickler's stack and refuses, with a one-line
:class:`PickleLimitError`,

* a length prefix (``BINBYTES8``, ``BINUNICODE``, ...) larger than the data left in the file: the
  unpickler would allocate it before finding the file too short;
* any one object (literal or built by a call) larger than ``max_object_bytes``;
* calls whose results add up to more than ``budget`` bytes in total (memoized arguments re-used).

A call's cost is estimated from its arguments: the length of a string or bytes argument, the value
of an integer argument (``bytearray(n)``, ``range(n)``), the product of an integer tuple (an array
shape), or the cost of the object an argument was built by. Calls that only wrap existing data
(tensor views of a checkpoint's storages, ``torch.Size``, dtypes) cost nothing.

:func:`check_torch_file` applies this to a ``torch.save`` file (zip or legacy format) and
:func:`check_pickle_file` to a plain pickle.
"""

import _compat_pickle
import io
import os
import pickletools
import re
import zipfile

from ..cli import SeqRankUserError

__all__ = [
    "DEFAULT_MAX_OBJECT_BYTES",
    "PickleLimitError",
    "check_pickle_file",
    "check_pickle_stream",
    "check_torch_file",
    "describe_non_torch_file",
    "load_error_line",
    "preflight_torch_file",
    "max_object_bytes",
    "refused_global",
]

MB = 1024 * 1024
DEFAULT_MAX_OBJECT_BYTES = 16 * MB
MAX_OBJECT_ENV = "SEQRANK_MAX_PICKLED_OBJECT_MB"
# Allocations a file may cause beyond its own size (containers, small objects, decoding slack).
BUDGET_SLACK = 64 * MB

# Callables whose result is a view of data the file holds elsewhere, or a small fixed object.
_FREE_CALLS = {
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",
    "torch.nn.parameter.Parameter",
    "torch.Size",
    "torch.device",
    "torch.serialization._get_layout",
    "collections.OrderedDict",
    "numpy.dtype",
}
# Element sizes of the legacy storage classes (``torch.FloatStorage`` ...), by name prefix.
_STORAGE_ITEMSIZE = {
    "Double": 8,
    "Float": 4,
    "Half": 2,
    "BFloat16": 2,
    "Long": 8,
    "Int": 4,
    "Short": 2,
    "Char": 1,
    "Byte": 1,
    "Bool": 1,
    "ComplexDouble": 16,
    "ComplexFloat": 8,
    "Untyped": 1,
}
_LITERAL_STRINGS = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
    "BINBYTES",
    "SHORT_BINBYTES",
    "BINBYTES8",
    "BYTEARRAY8",
}
_LITERAL_INTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_KEEP_TEXT = 200
_HUGE = 1 << 80


class PickleLimitError(SeqRankUserError, ValueError):
    """A pickle would allocate more than its size warrants, or is not a valid pickle."""


def max_object_bytes():
    """The largest single pickled object accepted: 16 MB, or ``$SEQRANK_MAX_PICKLED_OBJECT_MB``."""
    value = os.environ.get(MAX_OBJECT_ENV, "")
    try:
        return int(float(value) * MB) if value else DEFAULT_MAX_OBJECT_BYTES
    except ValueError:
        raise PickleLimitError(f"{MAX_OBJECT_ENV}={value!r} is not a number") from None


class _Value:
    """What the scan knows of one stack item: a kind, a cost estimate and, for small ones, the
    value itself (ints, short strings, tuples)."""

    __slots__ = ("kind", "cost", "value")

    def __init__(self, kind, cost=0, value=None):
        self.kind = kind
        self.cost = cost
        self.value = value


# Object kept for stack items nothing needs to be known about (never modified).
_OTHER = _Value("other")
# Per opcode: (pops up to a mark, items popped besides, items pushed).
_STACK_EFFECTS = {
    op.name: (
        pickletools.markobject in op.stack_before,
        (
            op.stack_before.index(pickletools.markobject)
            if pickletools.markobject in op.stack_before
            else len(op.stack_before)
        ),
        len(op.stack_after),
    )
    for op in pickletools.opcodes
}


def _literal(opcode, arg):
    if opcode.name in _LITERAL_INTS:
        if isinstance(arg, bool):
            return _Value("int", 0, int(arg))
        return _Value("int", abs(arg), arg)
    if opcode.name in _LITERAL_STRINGS:
        text = arg if len(arg) <= _KEEP_TEXT else None
        return _Value("str", len(arg), text)
    return None


def _tuple_cost(items):
    """An integer tuple costs its product (an array shape), any other its largest item."""
    if not items or any(item.kind != "int" for item in items):
        return max((item.cost for item in items), default=0)
    product = 1
    for item in items:
        product *= abs(item.value)
        if product > _HUGE:
            # Far beyond any limit; stop before the product itself becomes expensive.
            return _HUGE
    return product


def _call_name(func):
    return func.value if func.kind == "global" else None


def _extent(args):
    """Size estimate of ``func(*args)``'s result: the largest cost of its arguments."""
    if args.kind == "tuple" and args.value is not None:
        return max((item.cost for item in args.value), default=0)
    return args.cost


class _Scanner:
    def __init__(self, where, budget, max_object, charge_storages):
        self.where = where
        self.budget = budget
        self.max_object = max_object
        self.charge_storages = charge_storages
        self.stack, self.metastack, self.memo = [], [], {}
        self.total = 0
        self.handlers = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")
        }

    def fail(self, problem):
        raise PickleLimitError(f"{self.where}: refusing to unpickle: {problem}")

    def malformed(self, problem):
        raise PickleLimitError(f"{self.where}: not a valid pickle ({problem})")

    def charge(self, cost, what, literal=False, storage=False):
        """Count ``cost`` bytes built by ``what``. A literal's bytes are in the file already, so it
        is only held to the per-object limit; a tensor storage only to the total."""
        if cost > self.max_object and not storage:
            self.fail(
                f"{what} would allocate {_size(cost)} (one pickled object may hold at most "
                f"{_size(self.max_object)}; {MAX_OBJECT_ENV} raises the limit)"
            )
        if literal:
            return
        self.total += cost
        if self.total > self.budget:
            self.fail(
                f"{what} takes its objects past {_size(self.budget)}, far more than the file "
                "holds (forged sizes or repeated references to one large object)"
            )

    def pop(self):
        if not self.stack:
            self.malformed("stack underflow")
        return self.stack.pop()

    def pop_mark(self):
        items = self.stack
        if not self.metastack:
            self.malformed("no mark")
        self.stack = self.metastack.pop()
        return items

    def step(self, opcode, arg):
        name = opcode.name
        handler = self.handlers.get(name)
        if handler is not None:
            handler(arg)
            return
        literal = _literal(opcode, arg)
        if literal is None:
            self.generic(name)
            return
        if literal.kind == "str":
            self.charge(literal.cost, f"a {name} of {len(arg):,} bytes", literal=True)
        self.stack.append(literal)

    def generic(self, name):
        """Any other opcode: only its effect on the stack matters (containers, floats, ...)."""
        mark, popped, pushed = _STACK_EFFECTS[name]
        if mark:
            self.pop_mark()
        if len(self.stack) < popped:
            self.malformed("stack underflow")
        if popped:
            del self.stack[-popped:]
        self.stack.extend([_OTHER] * pushed)

    # ---------------------------------------------------------------- marks, memo, stack
    def op_MARK(self, arg):
        self.metastack.append(self.stack)
        self.stack = []

    def op_POP(self, arg):
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_DUP(self, arg):
        self.stack.append(self.stack[-1] if self.stack else self.pop())

    def _put(self, key):
        if not self.stack:
            self.malformed("memoizing an empty stack")
        self.memo[key] = self.stack[-1]

    def op_PUT(self, arg):
        self._put(arg)

    op_BINPUT = op_LONG_BINPUT = op_PUT

    def op_MEMOIZE(self, arg):
        self._put(len(self.memo))

    def op_GET(self, arg):
        if arg not in self.memo:
            self.malformed(f"memo key {arg} was never stored")
        self.stack.append(self.memo[arg])

    op_BINGET = op_LONG_BINGET = op_GET

    # ---------------------------------------------------------------- values
    def op_TUPLE(self, arg):
        self._tuple(self.pop_mark())

    def _tuple(self, items):
        self.stack.append(_Value("tuple", _tuple_cost(items), items))

    def op_EMPTY_TUPLE(self, arg):
        self._tuple([])

    def op_TUPLE1(self, arg):
        self._tuple([self.pop()])

    def op_TUPLE2(self, arg):
        second, first = self.pop(), self.pop()
        self._tuple([first, second])

    def op_TUPLE3(self, arg):
        third, second, first = self.pop(), self.pop(), self.pop()
        self._tuple([first, second, third])

    def op_GLOBAL(self, arg):
        self.stack.append(_Value("global", 0, _global_name(*arg.split(" ", 1))))

    def op_STACK_GLOBAL(self, arg):
        name, module = self.pop(), self.pop()
        if name.kind != "str" or module.kind != "str" or None in (name.value, module.value):
            self.malformed("STACK_GLOBAL needs two strings")
        self.stack.append(_Value("global", 0, _global_name(_text(module.value), _text(name.value))))

    # ---------------------------------------------------------------- calls
    def op_REDUCE(self, arg):
        args, func = self.pop(), self.pop()
        self._call(func, args)

    def op_NEWOBJ(self, arg):
        args, cls = self.pop(), self.pop()
        self._call(cls, args)

    def op_NEWOBJ_EX(self, arg):
        kwargs, args, cls = self.pop(), self.pop(), self.pop()
        self._call(cls, _Value("tuple", max(args.cost, kwargs.cost), None))

    def op_OBJ(self, arg):
        items = self.pop_mark()
        if not items:
            self.malformed("OBJ without a class")
        self._call(items[0], _Value("tuple", _tuple_cost(items[1:]), items[1:]))

    def op_INST(self, arg):
        items = self.pop_mark()
        self._call(_Value("global", 0, _global_name(*arg.split(" ", 1))), _Value("tuple", 0, items))

    def op_BUILD(self, arg):
        state, inst = self.pop(), self.pop()
        cost = state.cost
        if state.kind == "tuple" and state.value is not None:
            cost = max((item.cost for item in state.value), default=0)
        self.charge(cost, "restoring an object's state")
        self.stack.append(inst)

    def _call(self, func, args):
        cost = _extent(args)
        name = _call_name(func)
        # Views of data the file holds elsewhere keep their extent (a later copy is charged).
        if name not in _FREE_CALLS:
            self.charge(cost, f"calling {name or 'a constructor'}")
        self.stack.append(_Value("other", cost))

    def op_PERSID(self, arg):
        self.stack.append(_OTHER)

    def op_BINPERSID(self, arg):
        pid = self.pop()
        self.stack.append(_Value("other", self._storage_bytes(pid)))

    def _storage_bytes(self, pid):
        """Bytes of a ``('storage', StorageClass, key, location, numel, ...)`` persistent id.

        Legacy-format files allocate this before reading the data (zip-format files read it from
        their own record), so only then is it charged.
        """
        items = pid.value if pid.kind == "tuple" else None
        if not items or len(items) < 5 or items[4].kind != "int":
            return 0
        storage = _call_name(items[1]) or ""
        kind = storage.rsplit(".", 1)[-1]
        prefix = kind[: -len("Storage")] if kind.endswith("Storage") else ""
        itemsize = _STORAGE_ITEMSIZE.get(prefix, 16)
        nbytes = abs(items[4].value) * itemsize
        if self.charge_storages:
            self.charge(nbytes, f"a tensor storage ({storage})", storage=True)
        return nbytes


def _global_name(module, name):
    # Protocol 2 pickles use Python 2 names (__builtin__.xrange); name them as Python 3 does.
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{name}"


def _text(value):
    return value.decode("latin1") if isinstance(value, (bytes, bytearray)) else str(value)


def _size(nbytes):
    if nbytes >= 10 * MB:
        return f"{nbytes / MB:,.0f} MB"
    return f"{nbytes:,} bytes"


class _BoundedReader:
    """File-like view of ``f`` that refuses reads past ``end`` instead of attempting them."""

    def __init__(self, f, end, where):
        self.f = f
        self.end = end
        self.where = where

    def _left(self):
        return self.end - self.f.tell()

    def read(self, n=-1):
        left = self._left()
        if n is None or n < 0:
            n = left
        if n > left:
            raise PickleLimitError(
                f"{self.where}: refusing to unpickle: it declares {_size(n)} of data but only "
                f"{_size(max(left, 0))} follow in the file (truncated or forged)"
            )
        return self.f.read(n)

    def readline(self):
        return self.f.readline(max(self._left(), 0))


def check_pickle_stream(f, where, budget, max_object=None, storages=False):
    """Scan one pickle from the binary file ``f`` (positioned at its start) up to its STOP.

    Args:
        where: names the file in messages.
        budget: bytes the calls of this pickle may build in total.
        max_object: largest single object (default :func:`max_object_bytes`).
        storages: charge legacy tensor storages (``torch.save`` before PyTorch 1.6).

    Raises:
        PickleLimitError: one line naming ``where`` and the problem.
    """
    max_object = max_object_bytes() if max_object is None else max_object
    scanner = _Scanner(where, budget, max_object, storages)
    try:
        for opcode, arg, _ in pickletools.genops(f):
            scanner.step(opcode, arg)
    except PickleLimitError:
        raise
    except (ValueError, IndexError, TypeError, OverflowError, UnicodeDecodeError) as exc:
        raise PickleLimitError(f"{where}: not a valid pickle ({_first_line(exc)})") from None
    return scanner.total


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_pickle_file(path, max_object=None):
    """Scan the plain pickle ``path`` (e.g. an IRSR ``.pkl`` annotation file)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        check_pickle_stream(_BoundedReader(f, size, path), path, size + BUDGET_SLACK, max_object)


def describe_non_torch_file(path):
    """Why ``path`` cannot be a ``torch.save`` file, in a few words, or None if it may be one.

    ``torch.save`` files start with a zip header or with pickle protocol 2 (legacy format); what
    users give instead is mostly an empty file, a Git LFS pointer, an HTML page (a failed
    download) or some other text.
    """
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return None
    if not head:
        return "empty file, not a torch checkpoint"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (fetch it with `git lfs pull`)"
    start = head.lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return "an HTML/XML page, not a torch checkpoint (a failed or login-walled download?)"
    if b"\x00" in head:
        return f"not a torch file (unknown format, starts with bytes {head[:8].hex(' ')})"
    text = head.decode("utf-8", errors="replace").strip()
    first = text.splitlines()[0] if text else ""
    return f"a text file, not a torch checkpoint (it starts with {first[:40]!r})"


def check_torch_file(path, max_object=None):
    """Scan a ``torch.save`` file before ``torch.load`` (either on-disk format).

    Zip format: every entry must be stored uncompressed (or at least not claim more bytes than the
    archive holds) and each ``data.pkl`` is scanned. Legacy format: its five pickles are scanned,
    storages included, against the file size.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head == b"PK\x03\x04":
            _check_torch_zip(f, path, size, max_object)
            return
        reader = _BoundedReader(f, size, path)
        budget = size + BUDGET_SLACK
        for _ in range(5):
            budget -= check_pickle_stream(reader, path, budget, max_object, storages=True)
            if f.tell() >= size:
                break


def preflight_torch_file(path, error_cls, not_torch="{problem}"):
    """Check ``path`` before ``torch.load``: a ``torch.save`` file whose pickle stays in bounds.

    Every failure becomes one ``error_cls`` line naming ``path``; ``not_torch`` formats the reason
    when the file is not a torch file at all (``{problem}`` is replaced by it).
    """
    try:
        problem = describe_non_torch_file(path)
        if problem:
            raise error_cls(f"{path}: " + not_torch.format(problem=problem))
        check_torch_file(path)
    except PickleLimitError as exc:
        raise error_cls(str(exc)) from None
    except OSError as exc:
        raise error_cls(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _check_torch_zip(f, path, size, max_object):
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PickleLimitError(f"{path}: not a valid zip archive ({exc})") from None
    with archive:
        entries = archive.infolist()
        declared = sum(info.file_size for info in entries)
        if declared > size + BUDGET_SLACK:
            raise PickleLimitError(
                f"{path}: refusing to load: its zip entries unpack to {_size(declared)} from a "
                f"{_size(size)} file (torch.save never compresses them)"
            )
        for info in entries:
            if info.filename.endswith("/data.pkl") or info.filename == "data.pkl":
                data = archive.read(info)
                check_pickle_stream(io.BytesIO(data), path, size + BUDGET_SLACK, max_object)


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_REFUSED = ("unsupported global", "unrecognized function", "can only create", "can only build")


def refused_global(text):
    """What a weights-only unpickler refused, from its error message: the global's name (or the
    line saying what it refused), or None when the error was something else.

    torch's wording changes between versions ("Unsupported global: GLOBAL x", "Trying to load
    unsupported GLOBAL x whose module is blocked", ...); the name follows "GLOBAL".
    """
    match = _GLOBAL.search(text)
    if match:
        return match.group(1)
    for line in text.splitlines():
        if any(marker in line.lower() for marker in _REFUSED):
            return line.strip()
    return None


def load_error_line(exc):
    """One line out of ``torch.load``'s (often multi-paragraph) error message."""
    if isinstance(exc, EOFError):
        return "empty or truncated file"
    text = str(exc)
    # torch's weights-only message buries the actual cause after this marker.
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
