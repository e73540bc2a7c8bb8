"""Converters of the original SOR dataset releases into the SeqRank dataset layout.

:mod:`.common` holds what every release shares (rank mapping, polygons, images, the output JSON
and the command line); :mod:`.assr` and :mod:`.irsr` read one release each. The commands are
``python -m scripts.convert_assr`` and ``python -m scripts.convert_irsr``.
"""
