"""``python -m clinclip`` (and ``torchrun ... -m clinclip train ...``): the same CLI as the console script."""

from clinclip.cli.main import main

if __name__ == "__main__":
    main()
