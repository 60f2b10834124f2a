/*
 * tls.c: the server's SSL_CTXs (see tls.h). The store is a small array of
 * (certificate, key, SSL_CTX) found by the file names; a load builds a whole new
 * array (fresh contexts, or a new reference to the old context of a pair that
 * failed) and only then replaces the old one, so the store is never half
 * reloaded and a failed allocation leaves it as it was. SSL objects hold their
 * own reference to their SSL_CTX: a replaced context lives until its last
 * session is gone.
 */
#include "tls.h"

#include <sys/stat.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "util.h"

/* TLS 1.2: forward secrecy and AEAD only; TLS 1.3 keeps OpenSSL's default suites */
#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

#define SESSION_ID_CONTEXT "mailgate"

struct tls_pair {
	char *certificate;
	char *key;
	SSL_CTX *ctx;			/* one reference owned here; NULL: never loaded */
};

struct tls_store {
	struct tls_pair *pairs;
	size_t n;
	struct tls_pair *global;	/* the config's own tls, NULL if it has none */
};

struct tls_store *
tls_store_new(void)
{
	return calloc(1, sizeof(struct tls_store));
}

static void
pairs_free(struct tls_pair *pairs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(pairs[i].certificate);
		free(pairs[i].key);
		SSL_CTX_free(pairs[i].ctx);
	}
	free(pairs);
}

void
tls_store_free(struct tls_store *st)
{
	if (st == NULL)
		return;
	pairs_free(st->pairs, st->n);
	free(st);
}

static struct tls_pair *
pair_find(struct tls_pair *pairs, size_t n, const struct tls_files *f)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(pairs[i].certificate, f->certificate) == 0 &&
		    strcmp(pairs[i].key, f->key) == 0)
			return &pairs[i];
	return NULL;
}

/* "X lib" reasons only say which library passed the error up: noise after the cause */
static bool
err_is_wrapper(unsigned long e)
{
	return ERR_COMMON_ERROR(e) && !ERR_FATAL_ERROR(e) &&
	    (ERR_GET_REASON(e) & ((1L << ERR_RFLAGS_OFFSET) - 1)) < 256;
}

const char *
tls_error_string(char *buf, size_t cap)
{
	unsigned long e;
	const char *data, *r;
	char num[32], one[512];
	size_t len = 0;
	int flags, n;

	if (cap == 0) {
		ERR_clear_error();
		return buf;
	}
	buf[0] = '\0';
	/* oldest first: the root cause (say, fopen's errno) leads the line */
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		if (len > 0 && err_is_wrapper(e))
			continue;
		if (ERR_SYSTEM_ERROR(e))
			r = strerror(ERR_GET_REASON(e));
		else
			r = ERR_reason_error_string(e);
		if (r == NULL) {
			snprintf(num, sizeof(num), "error %08lx", e);
			r = num;
		}
		if (!(flags & ERR_TXT_STRING) || data == NULL)
			data = "";
		snprintf(one, sizeof(one), "%s%s%s%s", r, *data ? " (" : "", data,
		    *data ? ")" : "");
		/* full, or said already (a failing decoder is tried more than once) */
		if (len >= cap - 1 || strstr(buf, one) != NULL)
			continue;
		n = snprintf(buf + len, cap - len, "%s%s", len > 0 ? "; " : "", one);
		if (n > 0)
			len += (size_t)n < cap - len ? (size_t)n : cap - len - 1;
	}
	if (len == 0)
		util_strlcpy(buf, "unknown error", cap);
	return buf;
}

/* a daemon must never prompt on its terminal for a key's passphrase */
static int
no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return 0;
}

/* options every context shares, server or client */
static bool
ctx_common(SSL_CTX *ctx)
{
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* an idle SMTP session waits minutes between commands: no 2 x 16K buffers meanwhile */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1;
}

static bool
is_directory(const char *file)
{
	struct stat sb;

	return stat(file, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* a server context for one pair, or NULL with the reason in why */
static SSL_CTX *
ctx_load(const char *certificate, const char *key, char *why, size_t whylen)
{
	SSL_CTX *ctx;
	EVP_PKEY *pkey;
	char reason[512];
	const char *what;
	unsigned long e;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		snprintf(why, whylen, "%s", tls_error_string(reason, sizeof(reason)));
		return NULL;
	}
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (!ctx_common(ctx) ||
	    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_ID_CONTEXT,
	    sizeof(SESSION_ID_CONTEXT) - 1) != 1) {
		snprintf(why, whylen, "%s", tls_error_string(reason, sizeof(reason)));
		goto fail;
	}
	/* OpenSSL reads a directory as an empty file: "no start line" would mislead */
	if (is_directory(certificate)) {
		snprintf(why, whylen, "is a directory");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, certificate) != 1) {
		snprintf(why, whylen, "%s", tls_error_string(reason, sizeof(reason)));
		goto fail;
	}
	if (is_directory(key)) {
		snprintf(why, whylen, "key %s: is a directory", key);
		goto fail;
	}
	/* key == certificate: the chain file holds the key too; PEM reading skips the certs */
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL's reasons alone ("unsupported", "bad decrypt") say too little */
		e = ERR_peek_error();
		if (ERR_SYSTEM_ERROR(e))
			what = "";
		else if (ERR_GET_LIB(e) == ERR_LIB_X509)
			what = "does not match the certificate: ";
		else
			what = "no unencrypted private key found: ";
		snprintf(why, whylen, "key %s: %s%s", key, what,
		    tls_error_string(reason, sizeof(reason)));
		goto fail;
	}
	/*
	 * A key of another type than the certificate loads into a slot of its own
	 * and is caught only here, where OpenSSL's reason ("no certificate
	 * assigned") would mislead.
	 */
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		pkey = SSL_CTX_get0_privatekey(ctx);
		snprintf(why, whylen, "key %s: does not match the certificate: an %s key", key,
		    pkey != NULL ? EVP_PKEY_get0_type_name(pkey) : "unknown");
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* "subject CN=mx.example.com, valid until 2027-01-01" for the log */
static void
ctx_describe(SSL_CTX *ctx, char *out, size_t cap)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	char subject[256] = "?", until[32] = "?";
	struct tm tm;

	if (x == NULL) {
		util_strlcpy(out, "no certificate", cap);
		return;
	}
	X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(out, cap, "subject %s, valid until %s", subject, until);
}

/* the pairs cfg uses, without duplicates, ctx not loaded yet; -1 when out of memory */
static int
pairs_wanted(const struct config *cfg, struct tls_pair **out, size_t *nout)
{
	struct tls_pair *pairs;
	const struct tls_files *f;
	size_t n = 0;

	if ((pairs = calloc(cfg->n_listeners + 1, sizeof(*pairs))) == NULL)
		return -1;
	for (size_t i = 0; i <= cfg->n_listeners; i++) {
		f = i == 0 ? &cfg->tls : &cfg->listeners[i - 1].tls;
		if (f->certificate == NULL || f->key == NULL ||
		    pair_find(pairs, n, f) != NULL)
			continue;
		pairs[n].certificate = strdup(f->certificate);
		pairs[n].key = strdup(f->key);
		n++;
		if (pairs[n - 1].certificate == NULL || pairs[n - 1].key == NULL) {
			pairs_free(pairs, n);
			return -1;
		}
	}
	*out = pairs;
	*nout = n;
	return 0;
}

int
tls_store_load(struct tls_store *st, const struct config *cfg,
    void (*logfn)(int warning, const char *msg))
{
	struct tls_pair *pairs, *old;
	char why[1024], msg[2048];
	size_t n;
	int failures = 0;

	if (pairs_wanted(cfg, &pairs, &n) == -1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct tls_pair *p = &pairs[i];

		if ((p->ctx = ctx_load(p->certificate, p->key, why, sizeof(why))) != NULL) {
			ctx_describe(p->ctx, why, sizeof(why));
			snprintf(msg, sizeof(msg), "TLS: loaded certificate %s: %s",
			    p->certificate, why);
			if (logfn != NULL)
				logfn(0, msg);
			continue;
		}
		failures++;
		old = pair_find(st->pairs, st->n, &(struct tls_files){ p->certificate, p->key });
		if (old != NULL && old->ctx != NULL && SSL_CTX_up_ref(old->ctx) == 1) {
			p->ctx = old->ctx;
			snprintf(msg, sizeof(msg), "TLS: cannot load certificate %s: %s; "
			    "keeping the one loaded before", p->certificate, why);
		} else
			snprintf(msg, sizeof(msg), "TLS: cannot load certificate %s: %s",
			    p->certificate, why);
		if (logfn != NULL)
			logfn(1, msg);
	}
	/* the swap: nothing below can fail */
	pairs_free(st->pairs, st->n);
	st->pairs = pairs;
	st->n = n;
	st->global = cfg->tls.certificate != NULL && cfg->tls.key != NULL ?
	    pair_find(pairs, n, &cfg->tls) : NULL;
	return failures;
}

SSL_CTX *
tls_store_ctx(struct tls_store *st, const struct listener_conf *l)
{
	struct tls_pair *p;

	if (l != NULL && l->tls.certificate != NULL && l->tls.key != NULL)
		p = pair_find(st->pairs, st->n, &l->tls);
	else
		p = st->global;
	if (p == NULL || p->ctx == NULL || SSL_CTX_up_ref(p->ctx) != 1)
		return NULL;
	return p->ctx;
}

bool
tls_configured(const struct config *cfg, const struct listener_conf *l)
{
	return (l != NULL && l->tls.certificate != NULL) ||
	    (cfg != NULL && cfg->tls.certificate != NULL);
}

SSL_CTX *
tls_client_ctx_new(void)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return NULL;
	if (!ctx_common(ctx)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* opportunistic SMTP TLS: an unverifiable certificate still beats plain text */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}
