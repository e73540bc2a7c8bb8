"""Convert the original IRSR release (Liu et al., TPAMI 2021) into the SeqRank dataset layout.

The converter is :mod:`seqrank.data.converters.irsr`; ``python -m scripts.convert_irsr --help``
lists the options.
"""

from seqrank.data.converters.irsr import main

if __name__ == "__main__":
    main()
