"""A SHA-256 whose state can be saved and restored in another process.

hashlib's state cannot leave its process, but a resumable upload may continue on any
gateway replica, or after a crash. OpenSSL's ``SHA256_CTX`` is a plain struct (the
eight chaining words, the bit count, the partial block and its fill), so its bytes are
the whole state: :meth:`Sha256.state` is stored in PostgreSQL with the acknowledged
offset, and :meth:`Sha256.restore` continues it at native speed (docs/architecture.md
§12). The ``SHA256_*`` functions are deprecated in OpenSSL 3 in favour of EVP, whose
contexts are opaque, but they are still exported by every libcrypto 1.1 and 3.x.
"""

import ctypes
import ctypes.util


class _Ctx(ctypes.Structure):
    # openssl/sha.h: SHA_LONG h[8]; SHA_LONG Nl, Nh; SHA_LONG data[16]; unsigned int num, md_len;
    _fields_ = (
        ("h", ctypes.c_uint32 * 8),
        ("nl", ctypes.c_uint32),
        ("nh", ctypes.c_uint32),
        ("data", ctypes.c_uint32 * 16),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    )


STATE_BYTES = ctypes.sizeof(_Ctx)


def _load() -> ctypes.CDLL:
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so.1.1"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.SHA256_Init.argtypes = (ctypes.POINTER(_Ctx),)
        lib.SHA256_Update.argtypes = (ctypes.POINTER(_Ctx), ctypes.c_void_p, ctypes.c_size_t)
        lib.SHA256_Final.argtypes = (ctypes.c_char_p, ctypes.POINTER(_Ctx))
        return lib
    raise OSError("libcrypto (OpenSSL) was not found; it is needed for resumable digests")


_lib = _load()


class Sha256:
    """hashlib-like SHA-256 (``update``, ``hexdigest``) with a portable state."""

    def __init__(self) -> None:
        self._ctx = _Ctx()
        _lib.SHA256_Init(ctypes.byref(self._ctx))

    @classmethod
    def restore(cls, state: bytes) -> "Sha256":
        if len(state) != STATE_BYTES:
            raise ValueError(f"a SHA-256 state is {STATE_BYTES} bytes, not {len(state)}")
        digest = cls.__new__(cls)
        digest._ctx = _Ctx.from_buffer_copy(state)
        return digest

    def state(self) -> bytes:
        return bytes(self._ctx)

    def update(self, data: bytes | bytearray) -> None:
        if not data:
            return
        # A bytearray is hashed in place, not copied into a bytes first.
        buffer = data if isinstance(data, bytes) else (ctypes.c_char * len(data)).from_buffer(data)
        _lib.SHA256_Update(ctypes.byref(self._ctx), buffer, len(data))

    def hexdigest(self) -> str:
        """The digest so far; the state itself is left as it was."""
        ctx = _Ctx.from_buffer_copy(bytes(self._ctx))
        out = ctypes.create_string_buffer(32)
        _lib.SHA256_Final(out, ctypes.byref(ctx))
        return out.raw.hex()
