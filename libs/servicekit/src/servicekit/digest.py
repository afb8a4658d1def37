"""A SHA-256 whose state can be saved and restored in another process.

hashlib's state cannot leave its process, but a resumable upload may continue on any
gateway replica, or after a crash. OpenSSL's ``SHA256_CTX`` is a plain struct (the
eight chaining words, the bit count, the partial block and its fill), so its bytes are
the whole state: :meth:`Sha256.state` is stored in PostgreSQL with the acknowledged
offset, and :meth:`Sha256.restore` continues it at native speed (docs/architecture.md
§12). The struct's layout and the deprecated ``SHA256_*`` functions are OpenSSL's, not
promised by it: they live in :mod:`servicekit.compat.openssl`.
"""

import ctypes

from servicekit.compat.openssl import STATE_BYTES, Sha256Ctx, libcrypto

__all__ = ["STATE_BYTES", "Sha256"]


class Sha256:
    """hashlib-like SHA-256 (``update``, ``hexdigest``) with a portable state."""

    def __init__(self) -> None:
        self._ctx = Sha256Ctx()
        libcrypto.SHA256_Init(ctypes.byref(self._ctx))

    @classmethod
    def restore(cls, state: bytes) -> "Sha256":
        if len(state) != STATE_BYTES:
            raise ValueError(f"a SHA-256 state is {STATE_BYTES} bytes, not {len(state)}")
        digest = cls.__new__(cls)
        digest._ctx = Sha256Ctx.from_buffer_copy(state)
        return digest

    def state(self) -> bytes:
        return bytes(self._ctx)

    def update(self, data: bytes | bytearray) -> None:
        if not data:
            return
        # A bytearray is hashed in place, not copied into a bytes first.
        buffer = data if isinstance(data, bytes) else (ctypes.c_char * len(data)).from_buffer(data)
        libcrypto.SHA256_Update(ctypes.byref(self._ctx), buffer, len(data))

    def hexdigest(self) -> str:
        """The digest so far; the state itself is left as it was."""
        ctx = Sha256Ctx.from_buffer_copy(bytes(self._ctx))
        out = ctypes.create_string_buffer(32)
        libcrypto.SHA256_Final(out, ctypes.byref(ctx))
        return out.raw.hex()
