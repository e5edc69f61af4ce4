"""Safe evaluation of Accelergy attribute expressions.

Accelergy lets an attribute be a number, a string, or an expression over other attributes
(`depth * width`, `max(32, width)`, `ceil(log2(real_depth))`, `x if c else y`, `a ** 0.78`).
We parse the text with `ast` and walk the tree ourselves, allowing only arithmetic,
comparisons, boolean logic, conditional expressions and a fixed set of math functions.
Nothing is ever passed to Python's `eval`: attribute access, subscripts, lambdas,
comprehensions and calls to anything outside `FUNCTIONS` are rejected.
"""

import ast
import math
import operator

MAX_TEXT = 2000  # characters in one expression
MAX_EXPONENT = 4096  # |b| in a ** b, so that 10 ** 10 ** 10 cannot hang the process
MAX_INT_BITS = 4096  # integers larger than this are rejected


class ExprError(ValueError):
    """An expression that cannot be evaluated (syntax, unknown name, forbidden construct)."""


def _log(x, base=math.e):
    return math.log(x, base)


FUNCTIONS = {
    "max": max,
    "min": min,
    "abs": abs,
    "round": round,
    "int": int,
    "float": float,
    "bool": bool,
    "ceil": math.ceil,
    "floor": math.floor,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": _log,
    "log2": math.log2,
    "log10": math.log10,
}
CONSTANTS = {"True": True, "False": False, "None": None, "inf": math.inf, "pi": math.pi}


def _pow(a, b):
    if isinstance(b, (int, float)) and abs(b) > MAX_EXPONENT:
        raise ExprError(f"exponent {b!r} is too large")
    return operator.pow(a, b)


_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _number(v, text):
    if isinstance(v, (bool, int, float)):
        return v
    raise ExprError(f"arithmetic on a non-number {v!r} in {text!r}")


class _Walker:
    def __init__(self, text, lookup):
        self.text = text
        self.lookup = lookup

    def visit(self, node):
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise ExprError(f"{type(node).__name__} is not allowed in expression {self.text!r}")
        value = method(node)
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
            raise ExprError(f"integer too large in {self.text!r}")
        return value

    def visit_Constant(self, node):
        if isinstance(node.value, (int, float, str, bool)) or node.value is None:
            return node.value
        raise ExprError(f"constant {node.value!r} is not allowed in {self.text!r}")

    def visit_Name(self, node):
        try:
            return self.lookup(node.id)
        except KeyError:
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise ExprError(f"unknown name {node.id!r} in expression {self.text!r}") from None

    def visit_BinOp(self, node):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExprError(f"operator {type(node.op).__name__} is not allowed in {self.text!r}")
        a, b = _number(self.visit(node.left), self.text), _number(self.visit(node.right), self.text)
        try:
            return op(a, b)
        except (ZeroDivisionError, OverflowError, ValueError, TypeError) as e:
            raise ExprError(f"{e} in {self.text!r}") from None

    def visit_UnaryOp(self, node):
        v = self.visit(node.operand)
        if not isinstance(node.op, ast.Not):
            v = _number(v, self.text)
        return _UNARY[type(node.op)](v)

    def visit_BoolOp(self, node):
        if isinstance(node.op, ast.And):
            v = True
            for x in node.values:
                v = self.visit(x)
                if not v:
                    return v
            return v
        v = False
        for x in node.values:
            v = self.visit(x)
            if v:
                return v
        return v

    def visit_Compare(self, node):
        left = self.visit(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = self.visit(comp)
            f = _COMPARE.get(type(op))
            if f is None:
                raise ExprError(f"comparison {type(op).__name__} is not allowed in {self.text!r}")
            try:
                if not f(left, right):
                    return False
            except TypeError as e:
                raise ExprError(f"{e} in {self.text!r}") from None
            left = right
        return True

    def visit_IfExp(self, node):
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_Call(self, node):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExprError(f"function {name!r} is not allowed in {self.text!r} (allowed: {', '.join(FUNCTIONS)})")
        if node.keywords:
            raise ExprError(f"keyword arguments are not allowed in {self.text!r}")
        args = [self.visit(a) for a in node.args]
        try:
            return FUNCTIONS[node.func.id](*args)
        except (ValueError, TypeError, OverflowError, ZeroDivisionError) as e:
            raise ExprError(f"{node.func.id}(): {e} in {self.text!r}") from None


def evaluate(text, lookup=None):
    """Value of expression `text`; `lookup(name)` gives a name's value or raises KeyError."""
    text = str(text)
    if len(text) > MAX_TEXT:
        raise ExprError(f"expression longer than {MAX_TEXT} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"cannot parse {text!r}: {e.msg}") from None
    return _Walker(text, lookup or _no_names).visit(tree.body)


def _no_names(name):
    raise KeyError(name)


_OPERATOR_CHARS = set("*/()+<>=%")


def attribute_value(raw, lookup=None):
    """Accelergy's reading of one attribute value.

    Non-strings are returned as they are. A string is evaluated as an expression when it is
    one; a string that is a single unknown name (`LPDDR4`) or not an expression at all
    (`40nm`, `SET ME`) is a plain string. A string that looks like arithmetic but does not
    parse, or refers to an unknown name inside arithmetic, raises ExprError.
    """
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if not text:
        return raw
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        if _OPERATOR_CHARS & set(text):
            raise ExprError(f"cannot parse expression {text!r}: {e.msg}") from None
        return raw
    if isinstance(tree.body, ast.Name):
        name = tree.body.id
        try:
            return (lookup or _no_names)(name)
        except KeyError:
            return CONSTANTS.get(name, raw)
    return evaluate(text, lookup)
