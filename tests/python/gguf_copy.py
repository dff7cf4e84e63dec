"""Rewriting GGUF files with the `gguf` package, for the SmolLM2 goldens and tests:
  - f32_copy: every tensor dequantized to F32 (what llm42 computes on after loading), the
    metadata unchanged but general.file_type (0 = all F32);
  - vocab_copy: the metadata only (a vocab-only file, as llama.cpp's ggml-vocab-*.gguf), with
    tokenizer.ggml.pre replaced, to check each pre-tokenizer on one real vocabulary.
"""

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize


def _copy_metadata(reader, writer, replace):
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue  # written by GGUFWriter itself
        if key in replace:
            value = replace[key]
        else:
            value = field.contents()
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, vtype, sub_type=sub)


def _write(writer):
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def f32_copy(src, dst):
    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(dst, arch)
    _copy_metadata(reader, writer, {"general.file_type": 0})
    for t in reader.tensors:
        data = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, data.reshape([int(n) for n in reversed(t.shape)]),
                          raw_dtype=GGMLQuantizationType.F32)
    _write(writer)


def vocab_copy(src, dst, pre):
    reader = GGUFReader(src)
    writer = GGUFWriter(dst, reader.fields["general.architecture"].contents())
    _copy_metadata(reader, writer, {"tokenizer.ggml.pre": pre})
    _write(writer)
