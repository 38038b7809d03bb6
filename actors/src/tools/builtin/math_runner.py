# The math tool's sandbox runner (SPEC §6.1). Reads code on stdin; prints the output or
# "Error:\n" + traceback. Runs in its own process with limits, restricted builtins and a
# guarded import.
import ast
import builtins
import sys
import traceback

BANNED_MODULES = {
    "os", "sys", "subprocess", "shutil", "pathlib", "socket", "http", "urllib", "requests",
    "pickle", "marshal", "shelve", "dbm", "sqlite3", "ctypes", "multiprocessing", "threading",
    "asyncio", "concurrent", "signal", "pty", "tty", "termios", "fcntl", "resource", "syslog",
    "tempfile", "io", "builtins", "__builtin__", "importlib",
}
BANNED_CALLS = {
    "open", "exec", "eval", "compile", "input", "breakpoint", "memoryview", "globals",
    "locals", "vars", "__import__",
}
ALLOWED_DUNDERS = {"__name__", "__doc__", "__class__"}


def refuse(message):
    print("Error:\n" + message)
    sys.exit(0)


def check(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            if name.split(".")[0] in BANNED_MODULES:
                refuse(f"import of {name} is not allowed")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BANNED_CALLS:
            refuse(f"calling {node.func.id}() is not allowed")
        if isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr not in ALLOWED_DUNDERS:
            refuse(f"access to {node.attr} is not allowed")
        if isinstance(node, ast.Name) and node.id.startswith("__") and node.id not in ALLOWED_DUNDERS:
            refuse(f"access to {node.id} is not allowed")


def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if name.split(".")[0] in BANNED_MODULES:
        raise ImportError(f"import of {name} is not allowed")
    return builtins.__import__(name, globals, locals, fromlist, level)


def main():
    import resource

    code = sys.stdin.read()
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(100_000)
    try:
        tree = ast.parse(code, "<math>")
    except SyntaxError:
        refuse(traceback.format_exc(limit=0))
    check(tree)
    if "print(" not in code and "result =" not in code and tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        tree.body[-1] = ast.Expr(ast.Call(ast.Name("print", ast.Load()), [last.value], []))
        ast.fix_missing_locations(tree)

    env = {}
    for module in ("math", "cmath", "statistics", "fractions", "decimal", "itertools", "functools", "random"):
        env[module] = __import__(module)
    env.update({k: getattr(env["math"], k) for k in ("pi", "e", "sqrt", "sin", "cos", "tan", "log", "exp", "floor", "ceil", "factorial", "gcd")})
    for optional in ("numpy", "scipy"):
        try:
            env["np" if optional == "numpy" else optional] = __import__(optional)
        except ImportError:
            pass
    try:
        import sympy
        env["sympy"] = sympy
        env.update({k: getattr(sympy, k) for k in ("symbols", "solve", "simplify", "expand", "factor", "diff", "integrate", "Rational", "Symbol", "sympify")})
    except ImportError:
        pass

    safe = {k: getattr(builtins, k) for k in dir(builtins) if not k.startswith("_") and k not in BANNED_CALLS}
    safe["__import__"] = guarded_import
    safe["__name__"] = "__math__"
    env["__builtins__"] = safe

    limit = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    try:
        exec(compile(tree, "<math>", "exec"), env)
    except BaseException:
        print("Error:\n" + traceback.format_exc(limit=-3))
        return
    if "result" in env and "result =" in code and "print(" not in code:
        print("result =", env["result"])


main()
