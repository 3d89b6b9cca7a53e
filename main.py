"""GOPose entry point: ``python main.py`` is the same as the ``gopose`` console script."""
import sys


def main(argv: list[str] | None = None) -> int:
    from app.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
