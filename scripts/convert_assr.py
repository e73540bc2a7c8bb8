"""Convert the original ASSR release (Siris et al., CVPR 2020) into the SeqRank dataset layout.

The converter is :mod:`seqrank.data.converters.assr`; ``python -m scripts.convert_assr --help``
lists the options.
"""

from seqrank.data.converters.assr import main

if __name__ == "__main__":
    main()
