"""MSRA-TD500, Total-Text and CTW1500 readers (filled in by the datasets work)."""
from dbcli.errors import DBNetError


def _todo(root, split):
    raise DBNetError("this dataset format is not implemented yet")


load_td500 = load_totaltext = load_ctw1500 = _todo
