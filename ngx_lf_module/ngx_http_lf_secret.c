
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/mman.h>
#include <malloc.h>

#include <curl/curl.h>

#include "ngx_http_lf_module.h"


/*
 * Where the secret keys live.  Each secret, and each Authorization
 * header made of one, is kept in pages of their own that a core dump
 * leaves out (MADV_DONTDUMP, on Linux), and that are wiped when the
 * configuration that holds them is freed.  The copy that nginx's
 * configuration parser made of a "langfuse_secret_key" argument is
 * wiped as soon as it is taken (the text that nginx read from its
 * configuration file is nginx's: langfuse_secret_key_file keeps the key
 * out of it).  libcurl, which writes the header into each request,
 * gets an allocator that wipes what it frees.
 */


typedef struct {
    u_char                     *start;
    size_t                      size;
} ngx_http_lf_secret_pages_t;


static void ngx_http_lf_secret_free(void *data);
static void *ngx_http_lf_curl_malloc(size_t size);
static void ngx_http_lf_curl_free(void *p);
static void *ngx_http_lf_curl_realloc(void *p, size_t size);
static char *ngx_http_lf_curl_strdup(const char *s);
static void *ngx_http_lf_curl_calloc(size_t n, size_t size);


u_char *
ngx_http_lf_secret_alloc(ngx_conf_t *cf, size_t len)
{
    u_char                      *p;
    size_t                       size;
    ngx_pool_cleanup_t          *cln;
    ngx_http_lf_secret_pages_t  *pages;

    cln = ngx_pool_cleanup_add(cf->pool, sizeof(ngx_http_lf_secret_pages_t));
    if (cln == NULL) {
        return NULL;
    }

    size = ngx_align(len, ngx_pagesize);

    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);

    if (p == MAP_FAILED) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "mmap(%uz) for a secret key failed", size);
        return NULL;
    }

#ifdef MADV_DONTDUMP
    if (madvise(p, size, MADV_DONTDUMP) == -1) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, ngx_errno,
                           "madvise(MADV_DONTDUMP) failed: core dumps may "
                           "hold the Langfuse secret key");
    }
#endif

    pages = cln->data;
    pages->start = p;
    pages->size = size;

    cln->handler = ngx_http_lf_secret_free;

    return p;
}


static void
ngx_http_lf_secret_free(void *data)
{
    ngx_http_lf_secret_pages_t  *pages = data;

    ngx_explicit_memzero(pages->start, pages->size);
    (void) munmap(pages->start, pages->size);
}


int
ngx_http_lf_secret_curl_init(void)
{
    return curl_global_init_mem(CURL_GLOBAL_DEFAULT,
                                ngx_http_lf_curl_malloc,
                                ngx_http_lf_curl_free,
                                ngx_http_lf_curl_realloc,
                                ngx_http_lf_curl_strdup,
                                ngx_http_lf_curl_calloc);
}


static void *
ngx_http_lf_curl_malloc(size_t size)
{
    return malloc(size);
}


static void
ngx_http_lf_curl_free(void *p)
{
    if (p) {
        ngx_explicit_memzero(p, malloc_usable_size(p));
        free(p);
    }
}


/* realloc() would free the old block unwiped */

static void *
ngx_http_lf_curl_realloc(void *p, size_t size)
{
    void    *n;
    size_t   old;

    if (p == NULL) {
        return malloc(size);
    }

    n = malloc(size ? size : 1);
    if (n == NULL) {
        return NULL;
    }

    old = malloc_usable_size(p);
    ngx_memcpy(n, p, ngx_min(old, size));
    ngx_http_lf_curl_free(p);

    return n;
}


static char *
ngx_http_lf_curl_strdup(const char *s)
{
    return strdup(s);
}


static void *
ngx_http_lf_curl_calloc(size_t n, size_t size)
{
    return calloc(n, size);
}


/* langfuse_secret_key: the parser's copy is wiped once it is kept */

char *
ngx_http_lf_secret_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_lf_loc_conf_t *llcf = conf;

    u_char     *p;
    ngx_str_t  *value;

    if (llcf->secret_key.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "is empty";
    }

    p = ngx_http_lf_secret_alloc(cf, value[1].len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(p, value[1].data, value[1].len);
    ngx_explicit_memzero(value[1].data, value[1].len);

    llcf->secret_key.data = p;
    llcf->secret_key.len = value[1].len;

    return NGX_CONF_OK;
}


/*
 * langfuse_secret_key_file: the secret from a file that only the master
 * reads at startup (mode 0600, owner root), so that it stays out of
 * nginx.conf.
 */

char *
ngx_http_lf_secret_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_lf_loc_conf_t *llcf = conf;

    u_char           *p;
    size_t            size;
    ssize_t           n;
    ngx_str_t        *value, name;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (llcf->secret_key.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name = name;
    file.log = cf->log;

    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name.data);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%s\" failed", name.data);
        goto failed;
    }

    size = (size_t) ngx_file_size(&fi);

    if (size == 0 || size > 4096) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" holds no secret key (%uz bytes)",
                           name.data, size);
        goto failed;
    }

    p = ngx_http_lf_secret_alloc(cf, size);
    if (p == NULL) {
        goto failed;
    }

    n = ngx_read_file(&file, p, size, 0);

    if (n != (ssize_t) size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_file_n " \"%s\" failed", name.data);
        goto failed;
    }

    /* a trailing newline is not part of the key */
    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' '
                 || p[n - 1] == '\t'))
    {
        n--;
    }

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" holds no secret key", name.data);
        goto failed;
    }

    llcf->secret_key.data = p;
    llcf->secret_key.len = n;

    ngx_close_file(file.fd);

    return NGX_CONF_OK;

failed:

    ngx_close_file(file.fd);

    return NGX_CONF_ERROR;
}
