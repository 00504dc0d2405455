"""The Arrow type of one column of a local data file, read from its schema or first block
only: light enough for config validation (which infers a regression from a float label
column) to call without importing the label readers."""

from __future__ import annotations

from pathlib import PurePosixPath

import pyarrow as pa


def column_type(path: str, fmt: str, column: str) -> str | None:
    """The Arrow type of `column` in the local file `path` (`fmt` as `data.format`, `auto`
    going by the suffix); None when the file or column cannot be read (reported later, where
    the data is read)."""
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    suffix = PurePosixPath(path).suffix.lower()
    fmt = fmt if fmt != "auto" else suffix.lstrip(".")
    try:
        if fmt in ("parquet", "pq"):
            schema = pq.read_schema(path)
        elif fmt in ("csv", "tsv"):
            parse = pa_csv.ParseOptions(
                delimiter="\t" if fmt == "tsv" else ",", quote_char=False if fmt == "tsv" else '"'
            )
            with pa_csv.open_csv(path, parse_options=parse) as reader:
                schema = reader.schema
        elif fmt in ("jsonl", "json"):
            schema = pa_json.read_json(path).schema
        else:
            return None
    except (OSError, pa.ArrowInvalid):
        return None
    if column not in schema.names:
        return None
    return str(schema.field(column).type)
