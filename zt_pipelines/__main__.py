"""``python -m zt_pipelines`` is the ``zt-pipelines`` command."""

from zt_pipelines.cli import main

if __name__ == "__main__":
    main()
