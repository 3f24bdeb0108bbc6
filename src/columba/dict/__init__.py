"""Columba dict package: key/value drivers (sqlite, memory) created by name with
`create_dict`; see `columba.dict.api` for the contract."""

from columba.dict.api import (
    Dict,
    DictConflict,
    DictError,
    DictTemporaryError,
    DictTransaction,
    create_dict,
    dict_drivers,
    register_dict,
)

__all__ = [
    "Dict",
    "DictConflict",
    "DictError",
    "DictTemporaryError",
    "DictTransaction",
    "create_dict",
    "dict_drivers",
    "register_dict",
]
