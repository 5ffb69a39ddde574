"""A minimal ConfigDict with the behaviour PXDesign's code relies on (written for these tests,
not ml_collections' code): nested dicts become ConfigDicts; attribute and item access; `get`;
`hasattr` False for a missing field; `in`, keys/items/iteration; not a dict (nor a Mapping),
as the real class is not; str() is the YAML block that ml_collections prints (keys sorted),
which PXDesign's own prints show during sampling."""


class ConfigDict:
    def __init__(self, initial=None):
        object.__setattr__(self, "_fields", {})
        for k, v in (initial or {}).items():
            self[k] = v

    def __setitem__(self, key, value):
        self._fields[key] = ConfigDict(value) if isinstance(value, dict) else value

    def __getitem__(self, key):
        return self._fields[key]

    def __getattr__(self, key):
        if key.startswith("__") or key == "_fields":
            raise AttributeError(key)
        try:
            return self._fields[key]
        except KeyError:
            raise AttributeError(f"'{key}' is not a field of this ConfigDict") from None

    def __setattr__(self, key, value):
        self[key] = value

    def get(self, key, default=None):
        return self._fields.get(key, default)

    def keys(self):
        return self._fields.keys()

    def items(self):
        return self._fields.items()

    def __iter__(self):
        return iter(self._fields)

    def __contains__(self, key):
        return key in self._fields

    def __len__(self):
        return len(self._fields)

    def to_dict(self):
        return {k: v.to_dict() if isinstance(v, ConfigDict) else v for k, v in self._fields.items()}

    def _yaml(self, indent):
        out = []
        for k in sorted(self._fields):
            v = self._fields[k]
            if isinstance(v, ConfigDict):
                out.append(" " * indent + f"{k}:")
                out.extend(v._yaml(indent + 2))
            else:
                out.append(" " * indent + f"{k}: {'null' if v is None else v}")
        return out

    def __str__(self):
        return "\n".join(self._yaml(0)) + "\n"

    __repr__ = __str__
