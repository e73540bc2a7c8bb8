"""SeqRank: Sequential Ranking of Salient Objects (AAAI 2024), a Detectron2 reimplementation."""

from pathlib import Path

from setuptools import find_packages, setup


def _requirements():
    lines = Path(__file__).with_name("requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


setup(
    name="seqrank",
    version="0.1.0",
    description="SeqRank salient object ranking on Detectron2",
    python_requires=">=3.10",
    packages=find_packages(include=["seqrank", "seqrank.*"]),
    install_requires=_requirements(),
)
