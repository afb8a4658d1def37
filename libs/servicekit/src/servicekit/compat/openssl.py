"""What servicekit uses of OpenSSL's libcrypto that it does not promise (checked against
OpenSSL 3.x; libcrypto 1.1 has the same layout).

**SHA-256 whose state can leave the process** (:class:`Sha256Ctx`, :data:`libcrypto`;
undocumented: the layout of ``SHA256_CTX`` from ``openssl/sha.h``, and the
``SHA256_Init``, ``SHA256_Update`` and ``SHA256_Final`` functions, deprecated in
OpenSSL 3 in favour of EVP, whose contexts are opaque). hashlib's state cannot leave its
process, but a resumable upload may continue on any gateway replica, or after a crash.
``SHA256_CTX`` is a plain struct (the eight chaining words, the bit count, the partial
block and its fill), so its bytes are the whole state: ``servicekit.digest`` stores them
in PostgreSQL with the acknowledged offset and continues them at native speed
(docs/architecture.md §12). Every libcrypto 1.1 and 3.x still exports the functions.

``libs/servicekit/tests/test_compat_upgrade.py`` checks the layout against the
SHA-256 standard's initial hash value and against hashlib.
"""

import ctypes
import ctypes.util

__all__ = ["STATE_BYTES", "Sha256Ctx", "libcrypto", "version"]


class Sha256Ctx(ctypes.Structure):
    """``SHA256_CTX``: ``SHA_LONG h[8]; SHA_LONG Nl, Nh; SHA_LONG data[16];
    unsigned int num, md_len;`` (openssl/sha.h)."""

    _fields_ = (
        ("h", ctypes.c_uint32 * 8),
        ("nl", ctypes.c_uint32),
        ("nh", ctypes.c_uint32),
        ("data", ctypes.c_uint32 * 16),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    )


STATE_BYTES = ctypes.sizeof(Sha256Ctx)


def _load() -> ctypes.CDLL:
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so.1.1"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.SHA256_Init.argtypes = (ctypes.POINTER(Sha256Ctx),)
        lib.SHA256_Update.argtypes = (ctypes.POINTER(Sha256Ctx), ctypes.c_void_p, ctypes.c_size_t)
        lib.SHA256_Final.argtypes = (ctypes.c_char_p, ctypes.POINTER(Sha256Ctx))
        lib.OpenSSL_version.argtypes = (ctypes.c_int,)
        lib.OpenSSL_version.restype = ctypes.c_char_p
        return lib
    raise OSError("libcrypto (OpenSSL) was not found; it is needed for resumable digests")


libcrypto = _load()
"""libcrypto, with ``SHA256_Init``, ``SHA256_Update`` and ``SHA256_Final`` typed."""


def version() -> str:
    """The loaded libcrypto's version (``OpenSSL_version(OPENSSL_VERSION)``)."""
    text: bytes = libcrypto.OpenSSL_version(0)
    return text.decode()
