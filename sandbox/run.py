"""Entry point inside the sandbox: runs template.py and turns failures into one short line.

The working directory holds run.py, posthog_driver/, template.py (the rendered template or an
ad hoc script) and run.json (template name and variables). Exit 0 on success; on an error, the
traceback (for unexpected errors) and a last stderr line `sandbox-runner-error: <sentence>`, exit 1.
Kept tiny: nothing is imported unless the script needs it.
"""
import sys


def _fail(message: str) -> "NoReturn":  # type: ignore[name-defined]
    sys.stderr.write("sandbox-runner-error: " + " ".join(message.split()) + "\n")
    sys.stderr.flush()
    raise SystemExit(1)


def main() -> None:
    with open("template.py", "rb") as f:
        source = f.read()
    code = compile(source, "template.py", "exec")
    scope = {"__name__": "__main__", "__file__": "template.py", "__builtins__": __builtins__}
    try:
        exec(code, scope)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _fail("The script was interrupted.")
    except MemoryError:
        _fail("The script ran out of memory (the sandbox's memory limit); work on less data at once.")
    except BaseException as error:  # noqa: BLE001 - the sandbox boundary reports every failure
        driver = sys.modules.get("posthog_driver.errors") or sys.modules.get("posthog_driver")
        base = getattr(driver, "PostHogError", None) if driver else None
        if base is not None and isinstance(error, base):
            _fail(str(error))
        import traceback

        traceback.print_exc()
        _fail(f"The script failed: {type(error).__name__}: {error}")
    finally:
        sys.stdout.flush()


if __name__ == "__main__":
    main()
