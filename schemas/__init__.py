"""The wire contract of povwatch: Avro schemas (`schemas/avro/*.avsc`), their codec, and the names of topics."""
from schemas.codec import AVRO_DIR, MAGIC, Codec, Decoded, default_codec
from schemas.errors import DecodeError, PovwatchError, SchemaError

__all__ = ["AVRO_DIR", "MAGIC", "Codec", "Decoded", "default_codec", "DecodeError", "PovwatchError", "SchemaError"]
