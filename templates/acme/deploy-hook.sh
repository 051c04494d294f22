#!/bin/sh
# Managed by mtls-deploy (role acme): run by certbot after it renewed a certificate (and by the
# provision after a new order). nginx takes the new certificate only if its configuration passes
# nginx -t; a refused one leaves the running nginx, and its certificate, as they are.
if ! out=$(nginx -t 2>&1); then
  echo "mtls-deploy: nginx -t failed, nginx not reloaded: $(echo "$out" | grep -m1 emerg)" >&2
  exit 1
fi
systemctl try-reload-or-restart nginx
