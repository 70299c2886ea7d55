"""Band math typed by users (``(nir - red) / (nir + red)``, ``where(ndvi > 0.3, 1, 0)``), evaluated safely.

The expression is parsed into Python's syntax tree and checked node by node against a whitelist: numbers, the
names of the bands given, arithmetic, comparisons, ``and``/``or``/``not`` and calls of a fixed list of numpy
functions. Nothing else: no attributes, subscripts, lambdas, comprehensions, strings or keyword arguments, and
limits on length, depth, size and exponents. The checked tree is then walked with numpy; neither Python's eval
nor numexpr ever sees user text (both reach attributes, and numexpr has evaluated injected code before)."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from musyq.core.errors import MusyqError

MAX_LENGTH = 1000  # characters
MAX_DEPTH = 24  # nested nodes
MAX_NODES = 400
MAX_EXPONENT = 64.0  # a constant exponent; larger ones only overflow

Array = NDArray[np.float64]

FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {  # name -> (function, least, most arguments)
    "where": (np.where, 3, 3), "abs": (np.abs, 1, 1), "sqrt": (np.sqrt, 1, 1), "exp": (np.exp, 1, 1),
    "log": (np.log, 1, 1), "log10": (np.log10, 1, 1), "sin": (np.sin, 1, 1), "cos": (np.cos, 1, 1),
    "tan": (np.tan, 1, 1), "arctan": (np.arctan, 1, 1), "arctan2": (np.arctan2, 2, 2), "floor": (np.floor, 1, 1),
    "ceil": (np.ceil, 1, 1), "round": (np.round, 1, 1), "minimum": (np.minimum, 2, 2),
    "maximum": (np.maximum, 2, 2), "clip": (np.clip, 3, 3), "isnan": (np.isnan, 1, 1),
    "isfinite": (np.isfinite, 1, 1),
}
BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
}
UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: np.logical_not,
}
COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


class ExpressionError(MusyqError, ValueError):
    """The expression is not one musyq evaluates; the message says which part and why."""


@dataclass(frozen=True)
class Expression:
    """A checked expression and the bands it reads."""

    text: str
    tree: ast.Expression
    bands: tuple[str, ...]

    def evaluate(self, values: Mapping[str, Array]) -> Array:
        """The expression on arrays of the bands (float64, NaN for no data); warnings of numpy are kept quiet
        (a division by zero gives inf or NaN, as band math users expect)."""
        missing = [b for b in self.bands if b not in values]
        if missing:
            raise ExpressionError(f"no values for {', '.join(missing)}")
        with np.errstate(all="ignore"):
            result = np.asarray(_evaluate(self.tree.body, values), dtype=np.float64)
        shape = np.broadcast_shapes(*(np.shape(values[b]) for b in self.bands)) if self.bands else result.shape
        return np.broadcast_to(result, shape).copy() if result.shape != shape else result


def _depth(node: ast.AST) -> int:
    return 1 + max((_depth(child) for child in ast.iter_child_nodes(node)), default=0)


def _check(node: ast.AST, bands: Sequence[str], used: list[str]) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"only numbers may be written, not {node.value!r}")
        return
    if isinstance(node, ast.Name):
        if node.id.startswith("_"):
            raise ExpressionError(f"names starting with an underscore are not allowed ({node.id})")
        if node.id not in bands:
            raise ExpressionError(f"unknown name {node.id!r}; the bands are {', '.join(bands)}")
        used.append(node.id)
        return
    if isinstance(node, ast.BinOp):
        if type(node.op) not in BINARY:
            raise ExpressionError(f"the operator {type(node.op).__name__} is not allowed")
        if isinstance(node.op, ast.Pow):
            exponent = node.right
            if isinstance(exponent, ast.UnaryOp) and isinstance(exponent.op, ast.USub):
                exponent = exponent.operand
            if isinstance(exponent, ast.Constant) and isinstance(exponent.value, (int, float)) \
                    and abs(exponent.value) > MAX_EXPONENT:
                raise ExpressionError(f"the exponent {exponent.value} is too large (at most {MAX_EXPONENT:g})")
            if isinstance(node.left, ast.BinOp) and isinstance(node.left.op, ast.Pow) or \
                    isinstance(node.right, ast.BinOp) and isinstance(node.right.op, ast.Pow):
                raise ExpressionError("powers of powers are not allowed")
        _check(node.left, bands, used)
        _check(node.right, bands, used)
        return
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in UNARY:
            raise ExpressionError(f"the operator {type(node.op).__name__} is not allowed")
        _check(node.operand, bands, used)
        return
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, bands, used)
        return
    if isinstance(node, ast.Compare):
        if any(type(op) not in COMPARE for op in node.ops):
            raise ExpressionError("only <, <=, >, >=, == and != compare")
        for part in (node.left, *node.comparators):
            _check(part, bands, used)
        return
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            raise ExpressionError("attributes (a.b) are not allowed, nor calls of them")
        if isinstance(node.func, ast.Name) and node.func.id.startswith("_"):
            raise ExpressionError(f"names starting with an underscore are not allowed ({node.func.id})")
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExpressionError(f"{called!r} is not a function musyq evaluates; these are: "
                                  f"{', '.join(FUNCTIONS)}")
        _, least, most = FUNCTIONS[node.func.id]
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError(f"{node.func.id}() takes plain arguments only")
        if not least <= len(node.args) <= most:
            raise ExpressionError(f"{node.func.id}() takes {least} argument(s), not {len(node.args)}")
        for argument in node.args:
            _check(argument, bands, used)
        return
    if isinstance(node, ast.Attribute):
        raise ExpressionError("attributes (a.b) are not allowed")
    raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")


def parse_expression(text: str, bands: Sequence[str]) -> Expression:
    """Check ``text`` against the whitelist, for arrays named ``bands``."""
    if not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is {len(text)} characters long (at most {MAX_LENGTH})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not an expression: {exc.msg} at character {exc.offset or 0}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("the expression is nested too deeply or holds a null character") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExpressionError(f"the expression has more than {MAX_NODES} parts")
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"the expression is nested more than {MAX_DEPTH} deep")
    used: list[str] = []
    _check(tree.body, bands, used)
    return Expression(text, tree, tuple(dict.fromkeys(used)))


def _evaluate(node: ast.AST, values: Mapping[str, Array]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return UNARY[type(node.op)](_evaluate(node.operand, values))
    if isinstance(node, ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = _evaluate(node.values[0], values)
        for value in node.values[1:]:
            result = combine(result, _evaluate(value, values))
        return result.astype(np.float64) if isinstance(result, np.ndarray) else float(result)
    if isinstance(node, ast.Compare):
        left, result = _evaluate(node.left, values), None
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, values)
            part = COMPARE[type(op)](left, right)
            result = part if result is None else np.logical_and(result, part)
            left = right
        return np.asarray(result, dtype=np.float64)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        function = FUNCTIONS[node.func.id][0]
        return function(*(_evaluate(a, values) for a in node.args))
    raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")
