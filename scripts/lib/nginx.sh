# nginx configuration pieces the load scripts share; sourced, not run. Each prints to stdout.

# The top level of a configuration whose files all live in directory $1 (not daemonised: the
# scripts keep nginx's process as their child).
nginx_common() { # $1: directory
  cat <<EOF
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 1024; }
EOF
}

# The inside of its `http` block: no access log, long keep-alive, temporary files in $1.
nginx_http_common() { # $1: directory
  cat <<EOF
  access_log off;
  default_type text/plain;
  keepalive_requests 1000000;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
EOF
}
