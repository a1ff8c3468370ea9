"""``python -m parajob`` is the ``parajob`` command."""

from parajob.cli import main

if __name__ == "__main__":
    main()
