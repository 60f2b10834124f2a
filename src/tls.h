/*
 * tls.h: the server's certificates as OpenSSL contexts, and the client context.
 *
 * A tls_store holds one server SSL_CTX per distinct (certificate, key) pair the
 * config uses (the global tls and each listener's override). tls_store_load()
 * (re)reads them all; a pair that fails keeps the SSL_CTX it had, so a reload
 * with a bad certificate never takes TLS away. Contexts are reference counted:
 * an SSL made from one keeps it alive after a reload replaced it. Only TLS 1.2
 * (ECDHE + AEAD ciphers) and TLS 1.3. Only the event-loop thread uses a store.
 */
#ifndef MAILGATE_TLS_H
#define MAILGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "config.h"

struct tls_store;

struct tls_store *tls_store_new(void);
void tls_store_free(struct tls_store *);

/*
 * (Re)load every certificate cfg uses. A pair that fails keeps its previous
 * SSL_CTX (if it had one) and is reported through logfn, one line per failed
 * pair: "TLS: cannot load certificate X: <reason>" (warning = 1), ending in
 * "; keeping the one loaded before" when it kept one; a loaded pair gets one
 * informational line (warning = 0). logfn may be NULL. Pairs cfg no longer uses
 * are dropped. Returns the number of failures, -1 when out of memory (store left
 * as it was). Blocking (file reads): at start-up and on reload only.
 */
int tls_store_load(struct tls_store *, const struct config *cfg,
    void (*logfn)(int warning, const char *msg));

/*
 * The server SSL_CTX for listener l (its own pair, else the global one), with a
 * reference the caller drops with SSL_CTX_free(). NULL when no certificate is
 * configured, or the configured one never loaded (STARTTLS: 454).
 */
SSL_CTX *tls_store_ctx(struct tls_store *, const struct listener_conf *l);

/* whether l (or the global tls, which l inherits) names a certificate; l may be NULL */
bool tls_configured(const struct config *, const struct listener_conf *l);

/* drains the OpenSSL error queue of this thread into one line in buf; returns buf */
const char *tls_error_string(char *buf, size_t cap);

/* a client SSL_CTX (TLS 1.2+, certificate verification off), NULL on failure */
SSL_CTX *tls_client_ctx_new(void);

#endif
