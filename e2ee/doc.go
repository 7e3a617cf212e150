// Package e2ee is securechat's end-to-end encryption: pure protocol code with
// no network, no disk and no UI, whose randomness and clock are injected by
// the caller. docs/protocol.md §9 describes its wire and storage formats.
//
// It implements
//
//   - account identity keys (Ed25519) and per-device key sets: an X25519
//     identity Diffie-Hellman key bound to the account by a DeviceCertificate,
//     a signed X25519 prekey, one-time X25519 prekeys, a signed last-resort
//     ML-KEM-768 prekey and signed one-time ML-KEM-768 prekeys, following
//     "The X3DH Key Agreement Protocol" (Marlinspike, Perrin, revision 1,
//     2016-11-04) §2.4 and §3.2 and "The PQXDH Key Agreement Protocol" (Kret,
//     Schmidt, revision 3, 2024-01-23) §2.4, §2.5 and §3.2;
//   - session setup with PQXDH (InitiateSession, RespondSession; PQXDH §3.3
//     and §3.4), whose secret key and associated data start the Double Ratchet
//     ("The Double Ratchet Algorithm", revision 1, §7.1);
//   - the Double Ratchet itself (ratchet*.go);
//   - safety numbers, Signal's 60-digit iterated-SHA-512 fingerprint
//     (SafetyNumber), for detecting a man in the middle;
//   - sender keys for groups, after libsignal's: a signed symmetric chain
//     per member device, given to the others over the pairwise sessions
//     (SenderKey, SenderKeyDistribution, SenderKeyRecord);
//   - group membership that only members change: changes signed by the
//     acting member's identity key and chained by hash, replayed in one
//     order so that members holding the same changes agree (GroupChange,
//     GroupLog);
//   - attachments: a file under a random key of its own as a chunked
//     ChaCha20-Poly1305 stream (STREAM; AttachmentWriter, AttachmentReader),
//     whose key and digest travel inside a ratchet message.
//
// Where this package departs from the specifications it says so at the
// place: the account identity key is Ed25519 and signs, while each device has
// its own X25519 identity key for Diffie-Hellman (so XEdDSA is not needed);
// every prekey signature also binds the device's identity key and the key's
// id and kind; and the associated data names both devices, not only both
// accounts.
//
// Sections cited as "X3DH §n", "PQXDH §n" and "Double Ratchet §n" refer to
// those documents.
package e2ee
