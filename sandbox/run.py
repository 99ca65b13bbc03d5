"""Entry point inside the sandbox: runs template.py and turns failures into one short line.

The working directory holds run.py, posthog_driver/, template.py (the rendered template or an
ad hoc script) and run.json (template name and variables). Exit 0 on success; on an error, the
traceback (for unexpected errors) and a last stderr line `sandbox-runner-error: <sentence>`, exit 1.
SystemExit passes through (a script's own exit code or message).

Kept tiny: nothing is imported unless the script needs it. Logging: the driver sends its records
to stderr at POSTHOG_LOG_LEVEL (default WARNING) by itself; only when POSTHOG_LOG_LEVEL is set does
run.py configure `logging` for the whole script (stderr, that level).
"""
import os
import sys

_SECRETS = ("POSTHOG_PERSONAL_API_KEY", "POSTHOG_PROJECT_API_KEY")


def _fail(message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
    line = " ".join(message.split())
    for name in _SECRETS:
        secret = os.environ.get(name) or ""
        if len(secret) >= 4:
            line = line.replace(secret, "[REDACTED]")
    if len(line) > 500:
        line = line[:499] + "…"
    sys.stderr.write("sandbox-runner-error: " + line + "\n")
    sys.stderr.flush()
    raise SystemExit(1)


def _setup_logging() -> None:
    level = (os.environ.get("POSTHOG_LOG_LEVEL") or "").strip().upper()
    if not level:
        return
    import logging

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("posthog_driver").setLevel(int(level) if level.isdigit() else
                                                 getattr(logging, level, logging.WARNING))


def main() -> None:
    _setup_logging()
    with open("template.py", "rb") as f:
        source = f.read()
    code = compile(source, "template.py", "exec")
    scope = {"__name__": "__main__", "__file__": "template.py", "__builtins__": __builtins__}
    sys.argv = ["template.py"] + sys.argv[1:]
    try:
        exec(code, scope)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _fail("The script was interrupted.")
    except MemoryError:
        _fail("The script ran out of memory (the sandbox's memory limit); work on less data at once.")
    except BaseException as error:  # noqa: BLE001 - the sandbox boundary reports every failure
        driver = sys.modules.get("posthog_driver.errors")
        base = getattr(driver, "PostHogError", None) if driver else None
        if base is not None and isinstance(error, base):
            _fail(str(error))
        import traceback

        traceback.print_exc()
        detail = str(error).strip().rstrip(".")
        _fail(f"The script failed: {type(error).__name__}" + (f": {detail}" if detail else "") + ".")
    finally:
        sys.stdout.flush()


if __name__ == "__main__":
    main()
