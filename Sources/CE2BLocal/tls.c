#define _GNU_SOURCE
#include "CE2BLocal.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void say(char *err, size_t len, const char *what) {
    if (err == NULL || len == 0) return;
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(err, len, "%s (%s).", what, buf);
    } else if (errno != 0) {
        snprintf(err, len, "%s (%s).", what, strerror(errno));
    } else {
        snprintf(err, len, "%s.", what);
    }
    ERR_clear_error();
}

/* ---------- certificates ---------- */

static int add_ext(X509 *issuer, X509 *cert, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static X509 *new_cert(EVP_PKEY *key, const char *cn, X509 *issuer, int days) {
    X509 *c = X509_new();
    if (c == NULL) return NULL;
    X509_set_version(c, 2);
    unsigned char serial[16];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), (long)days * 86400);
    X509_set_pubkey(c, key);
    X509_NAME *name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"sandbox-runner e2b-local", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
    return c;
}

static int write_pem(const char *dir, const char *file, X509 *a, X509 *b, EVP_PKEY *key) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, key ? 0600 : 0644);
    if (fd < 0) return 0;
    FILE *f = fdopen(fd, "w");
    if (f == NULL) { close(fd); return 0; }
    int ok = 1;
    if (a) ok = ok && PEM_write_X509(f, a);
    if (b) ok = ok && PEM_write_X509(f, b);
    if (key) ok = ok && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    return fclose(f) == 0 && ok;
}

int e2bl_make_certificates(const char *dir, const char *domain, char *err, size_t errlen) {
    errno = 0;
    int ok = 0;
    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *ca = NULL, *leaf = NULL;
    if (ca_key == NULL || key == NULL) { say(err, errlen, "Could not generate keys"); goto out; }
    ca = new_cert(ca_key, "e2b-local test CA", NULL, 30);
    if (ca == NULL || !add_ext(ca, ca, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")
        || !add_ext(ca, ca, NID_key_usage, "critical,keyCertSign,cRLSign")
        || !add_ext(ca, ca, NID_subject_key_identifier, "hash")
        || !X509_sign(ca, ca_key, EVP_sha256())) {
        say(err, errlen, "Could not make the CA certificate");
        goto out;
    }
    leaf = new_cert(key, domain, ca, 30);
    char san[1024];
    snprintf(san, sizeof san, "DNS:%s,DNS:*.%s,DNS:localhost,IP:127.0.0.1,IP:::1", domain, domain);
    if (leaf == NULL || !add_ext(ca, leaf, NID_basic_constraints, "critical,CA:FALSE")
        || !add_ext(ca, leaf, NID_key_usage, "critical,digitalSignature")
        || !add_ext(ca, leaf, NID_ext_key_usage, "serverAuth")
        || !add_ext(ca, leaf, NID_subject_alt_name, san)
        || !add_ext(ca, leaf, NID_authority_key_identifier, "keyid:always")
        || !X509_sign(leaf, ca_key, EVP_sha256())) {
        say(err, errlen, "Could not make the server certificate");
        goto out;
    }
    if (!write_pem(dir, "ca.pem", ca, NULL, NULL) || !write_pem(dir, "cert.pem", leaf, ca, NULL)
        || !write_pem(dir, "key.pem", NULL, NULL, key)) {
        say(err, errlen, "Could not write the certificates");
        goto out;
    }
    ok = 1;
out:
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

/* ---------- the TLS front ---------- */

struct e2bl_tls_front {
    SSL_CTX *ctx;
    int listen_fd;
    int wake[2];            /* readable once stopping: every thread polls it */
    char upstream[108];
    pthread_t acceptor;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    int active;
};

typedef struct {
    e2bl_tls_front *front;
    int fd;
} conn_arg;

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
    (void)ssl; (void)arg;
    static const unsigned char h1[] = "http/1.1";
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen) break;
        if (n == 8 && memcmp(in + i + 1, h1, 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK; /* no h2 here: the client falls back to HTTP/1.1 */
}

static void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

enum { BUF = 64 * 1024 };

/* Relays one connection: TLS on the client side, plaintext to the Unix socket. Non-blocking on
   both sides; SSL's WANT_READ/WANT_WRITE decide what to poll for. */
static void relay(e2bl_tls_front *front, int cfd) {
    SSL *ssl = SSL_new(front->ctx);
    int ufd = -1;
    unsigned char *up = malloc(BUF), *down = malloc(BUF);
    if (ssl == NULL || up == NULL || down == NULL) goto done;
    set_nonblocking(cfd);
    SSL_set_fd(ssl, cfd);
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    /* Handshake, 10 s at most. */
    for (;;) {
        int r = SSL_accept(ssl);
        if (r == 1) break;
        int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) goto done;
        struct pollfd p[2] = {{.fd = cfd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT}, {.fd = front->wake[0], .events = POLLIN}};
        if (poll(p, 2, 10000) <= 0 || p[1].revents) goto done;
    }

    ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, front->upstream, sizeof sa.sun_path - 1);
    if (ufd < 0 || connect(ufd, (struct sockaddr *)&sa, sizeof sa) != 0) goto done;
    set_nonblocking(ufd);

    size_t up_len = 0, up_off = 0, down_len = 0, down_off = 0;
    int client_eof = 0, upstream_eof = 0, up_shut = 0;
    for (;;) {
        int progress = 0;
        short cev = 0, uev = 0;
        /* client -> upstream */
        if (!client_eof && up_len == 0) {
            int r = SSL_read(ssl, up, BUF);
            if (r > 0) { up_len = (size_t)r; up_off = 0; progress = 1; }
            else {
                int e = SSL_get_error(ssl, r);
                if (e == SSL_ERROR_WANT_READ) cev |= POLLIN;
                else if (e == SSL_ERROR_WANT_WRITE) cev |= POLLOUT;
                else client_eof = 1;
            }
        }
        if (up_len > up_off) {
            ssize_t n = send(ufd, up + up_off, up_len - up_off, MSG_NOSIGNAL);
            if (n > 0) { up_off += (size_t)n; progress = 1; if (up_off == up_len) up_len = up_off = 0; }
            else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) uev |= POLLOUT;
            else if (n < 0 && errno != EINTR) goto done;
        }
        if (client_eof && up_len == 0 && !up_shut) { shutdown(ufd, SHUT_WR); up_shut = 1; progress = 1; }
        /* upstream -> client */
        if (!upstream_eof && down_len == 0) {
            ssize_t n = recv(ufd, down, BUF, 0);
            if (n > 0) { down_len = (size_t)n; down_off = 0; progress = 1; }
            else if (n == 0) { upstream_eof = 1; progress = 1; }
            else if (errno == EAGAIN || errno == EWOULDBLOCK) uev |= POLLIN;
            else if (errno != EINTR) upstream_eof = 1;
        }
        if (down_len > down_off) {
            int r = SSL_write(ssl, down + down_off, (int)(down_len - down_off));
            if (r > 0) { down_off += (size_t)r; progress = 1; if (down_off == down_len) down_len = down_off = 0; }
            else {
                int e = SSL_get_error(ssl, r);
                if (e == SSL_ERROR_WANT_WRITE) cev |= POLLOUT;
                else if (e == SSL_ERROR_WANT_READ) cev |= POLLIN;
                else goto done;
            }
        }
        if (upstream_eof && down_len == 0) { SSL_shutdown(ssl); goto done; }
        if (client_eof && up_shut && upstream_eof) goto done;
        if (progress || SSL_pending(ssl) > 0) continue;
        struct pollfd p[3] = {{.fd = cfd, .events = cev}, {.fd = ufd, .events = uev}, {.fd = front->wake[0], .events = POLLIN}};
        int r = poll(p, 3, -1);
        if (r < 0 && errno != EINTR) goto done;
        if (p[2].revents) goto done;
        if ((p[0].revents & (POLLERR | POLLNVAL)) || (p[1].revents & (POLLERR | POLLNVAL))) goto done;
        if ((p[0].revents & POLLHUP) && !(p[0].revents & POLLIN) && cev) client_eof = 1;
    }
done:
    if (ssl) SSL_free(ssl);
    if (ufd >= 0) close(ufd);
    close(cfd);
    free(up);
    free(down);
}

static void *conn_main(void *p) {
    conn_arg a = *(conn_arg *)p;
    free(p);
    relay(a.front, a.fd);
    pthread_mutex_lock(&a.front->lock);
    a.front->active--;
    pthread_cond_broadcast(&a.front->idle);
    pthread_mutex_unlock(&a.front->lock);
    return NULL;
}

static void *accept_main(void *p) {
    e2bl_tls_front *front = p;
    for (;;) {
        struct pollfd fds[2] = {{.fd = front->listen_fd, .events = POLLIN}, {.fd = front->wake[0], .events = POLLIN}};
        int r = poll(fds, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || fds[1].revents) break;
        int c = accept4(front->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        conn_arg *a = malloc(sizeof *a);
        if (a == NULL) { close(c); continue; }
        a->front = front;
        a->fd = c;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        pthread_mutex_lock(&front->lock);
        front->active++;
        pthread_mutex_unlock(&front->lock);
        pthread_t t;
        if (pthread_create(&t, &attr, conn_main, a) != 0) {
            pthread_mutex_lock(&front->lock);
            front->active--;
            pthread_mutex_unlock(&front->lock);
            close(c);
            free(a);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

e2bl_tls_front *e2bl_tls_start(const char *host, int port, const char *cert_path, const char *key_path,
                               const char *upstream_path, int *bound_port, char *err, size_t errlen) {
    errno = 0;
    if (strlen(upstream_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(err, errlen, "The upstream socket path %s is too long.", upstream_path);
        return NULL;
    }
    e2bl_tls_front *f = calloc(1, sizeof *f);
    if (f == NULL) { say(err, errlen, "Out of memory"); return NULL; }
    f->listen_fd = -1;
    f->wake[0] = f->wake[1] = -1;
    strncpy(f->upstream, upstream_path, sizeof f->upstream - 1);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->idle, NULL);

    f->ctx = SSL_CTX_new(TLS_server_method());
    if (f->ctx == NULL) { say(err, errlen, "Could not create a TLS context"); goto fail; }
    SSL_CTX_set_min_proto_version(f->ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(f->ctx, cert_path) != 1) { say(err, errlen, "Could not load the TLS certificate chain"); goto fail; }
    if (SSL_CTX_use_PrivateKey_file(f->ctx, key_path, SSL_FILETYPE_PEM) != 1) { say(err, errlen, "Could not load the TLS private key"); goto fail; }
    if (SSL_CTX_check_private_key(f->ctx) != 1) { say(err, errlen, "The TLS key does not match the certificate"); goto fail; }
    SSL_CTX_set_alpn_select_cb(f->ctx, alpn_select, NULL);

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0 || res == NULL) { snprintf(err, errlen, "Cannot resolve %s: %s.", host, gai_strerror(gai)); goto fail; }
    f->listen_fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (f->listen_fd >= 0) setsockopt(f->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (f->listen_fd < 0 || bind(f->listen_fd, res->ai_addr, res->ai_addrlen) != 0 || listen(f->listen_fd, 256) != 0) {
        freeaddrinfo(res);
        say(err, errlen, "Could not listen for TLS");
        goto fail;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(f->listen_fd, (struct sockaddr *)&ss, &sl);
    *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    if (pipe2(f->wake, O_CLOEXEC) != 0) { say(err, errlen, "Could not create a pipe"); goto fail; }
    if (pthread_create(&f->acceptor, NULL, accept_main, f) != 0) { say(err, errlen, "Could not start the TLS thread"); goto fail; }
    return f;
fail:
    if (f->listen_fd >= 0) close(f->listen_fd);
    if (f->wake[0] >= 0) { close(f->wake[0]); close(f->wake[1]); }
    if (f->ctx) SSL_CTX_free(f->ctx);
    free(f);
    return NULL;
}

void e2bl_tls_stop(e2bl_tls_front *f) {
    if (f == NULL) return;
    (void)!write(f->wake[1], "x", 1);
    pthread_join(f->acceptor, NULL);
    pthread_mutex_lock(&f->lock);
    while (f->active > 0) pthread_cond_wait(&f->idle, &f->lock);
    pthread_mutex_unlock(&f->lock);
    close(f->listen_fd);
    close(f->wake[0]);
    close(f->wake[1]);
    SSL_CTX_free(f->ctx);
    free(f);
}
