# Managed by mtls-deploy (mtls_deploy/release/instances.py): the instances of a backend's
# template unit <unit>@.service, one per release (two while a new one gets ready), for the
# backends nginx reaches through a socket link in the release (backend_proxy, backend_python
# with an app). Run as root: sh -c "$(this file)" instances <verb> <link> <arguments>; every
# argument is quoted by the engine. LINK is the name of the link in each release to its
# instance's socket, /run/<unit>/<instance>/app.sock. Verbs:
#   start LINK UNIT STAGED RELEASE READY TIMEOUT  a new instance for RELEASE beside the running
#       one, with the settings of STAGED (the release's path in place of its \001 marks); once
#       it is ready, RELEASE/LINK points at its socket. Ready: it answers GET READY over its
#       socket; with READY empty, its unit started (systemd's own readiness: Type=notify) and
#       its socket is there. Exited, or not ready within TIMEOUT s: stopped again, its last
#       output line on stderr, exit 1.
#   activate LINK UNIT RELEASE                    enable (and start) the instance RELEASE links to
#   retire LINK UNIT RELEASE                      stop the instance RELEASE links to, after a
#       moment: nginx connects through the link, so once it points elsewhere nothing new
#       reaches the old instance, which finishes what it has (its unit's graceful stop)
#   restart LINK UNIT STAGED ROOT READY TIMEOUT   the current release again, blue/green: a new
#       instance with the new settings, the link switched, the old instance retired; when the
#       new one fails, STAGED goes back to the settings the old one runs with
set -u

linked_instance() { # the instance whose socket $1/$LINK points at ("" when none)
  target=$(readlink "$1/$LINK" 2>/dev/null) || { echo ""; return; }
  target=${target%/app.sock}
  echo "${target##*/}"
}

answers() { # socket ready: GET ready answered over the socket; no path: the socket is there
  if [ -z "$2" ]; then
    [ -S "$1" ]
    return
  fi
  curl -fsS -o /dev/null --max-time 2 --unix-socket "$1" "http://localhost$2" 2>/dev/null
}

launch() { # unit staged release ready timeout -> prints the new instance; 1 when not ready
  unit=$1 staged=$2 release=$3 ready=$4 timeout=$5
  id=${release##*/}
  instance=$id
  if [ "$(linked_instance "$release")" = "$id" ]; then instance=$id.b; fi
  service=$unit@$instance.service
  socket=/run/$unit/$instance/app.sock
  dropin=/etc/systemd/system/$service.d
  if [ -d "$dropin" ]; then systemctl stop "$service"; fi # a leftover, linked nowhere
  mkdir -p "$dropin"
  sed "s|$(printf '\001')|$release|g" "$staged" > "$dropin/release.conf.new"
  mv -f "$dropin/release.conf.new" "$dropin/release.conf"
  systemctl daemon-reload
  since=$(date '+%Y-%m-%d %H:%M:%S')
  # Once more after a failure to spawn (systemd may lose the race for a fresh cgroup: status
  # 219/CGROUP); a server that exits after it started is not retried.
  systemctl start "$service" 2>/dev/null || {
    sleep 0.5
    systemctl reset-failed "$service" 2>/dev/null
    systemctl start "$service" 2>/dev/null
  }
  end=$(( $(date +%s) + timeout ))
  outcome="did not answer GET $ready within ${timeout}s"
  [ -n "$ready" ] || outcome="was not ready within ${timeout}s"
  while [ "$(date +%s)" -lt "$end" ]; do
    if answers "$socket" "$ready" && systemctl is-active --quiet "$service"; then
      ln -sfn "$socket" "$release/$LINK.new" && mv -T "$release/$LINK.new" "$release/$LINK" &&
        echo "$instance" && return 0
    fi
    if ! systemctl is-active --quiet "$service"; then
      outcome="exited before it was ready"
      [ -z "$ready" ] || outcome="exited before answering GET $ready"
      break
    fi
    sleep 0.1
  done
  sleep 0.3
  why=$(journalctl _SYSTEMD_UNIT="$service" _TRANSPORT=stdout --since "$since" -n 1 -o cat \
    --no-pager 2>/dev/null) # the server's own last line, else systemd's about spawning it
  if [ -z "$why" ] && ! systemctl is-active --quiet "$service"; then
    why=$(journalctl _SYSTEMD_UNIT="$service" --since "$since" -n 1 -o cat --no-pager 2>/dev/null)
  fi
  drop "$unit" "$instance"
  echo "$service $outcome${why:+: $why}" >&2
  return 1
}

drop() { # unit instance: stopped, disabled, its settings and socket directory gone
  systemctl disable --now --quiet "$1@$2.service" 2>/dev/null
  rm -rf "/etc/systemd/system/$1@$2.service.d" "/run/$1/$2"
  systemctl daemon-reload
  systemctl reset-failed "$1@$2.service" 2>/dev/null || true
}

unstage() { # unit staged release instance: the staged settings back to the running instance's
  # (its drop-in, the release's path marked again), so that the next provision sees new
  # settings to apply and fails again rather than saying "ok"; none running: no staged file
  running=/etc/systemd/system/$1@$4.service.d/release.conf
  if [ -n "$4" ] && [ -f "$running" ]; then
    sed "s|$3|$(printf '\001')|g" "$running" > "$2.new" && chmod 0644 "$2.new" &&
      mv -f "$2.new" "$2"
  else
    rm -f "$2"
  fi
}

retire() { # unit instance: requests nginx connected just before the switch get a moment
  [ -n "$2" ] || return 0
  sleep 1
  drop "$1" "$2"
}

verb=$1 LINK=$2
shift 2
case $verb in
  start)
    launch "$@" >/dev/null
    ;;
  activate)
    systemctl enable --now --quiet "$1@$(linked_instance "$2").service"
    ;;
  retire)
    retire "$1" "$(linked_instance "$2")"
    ;;
  restart)
    unit=$1 staged=$2 root=$3
    current=$(readlink "$root/current" 2>/dev/null) || exit 0
    case $current in /*) release=$current ;; *) release=$root/$current ;; esac
    [ -d "$release" ] || exit 0
    old=$(linked_instance "$release")
    if ! new=$(launch "$unit" "$staged" "$release" "$4" "$5"); then
      unstage "$unit" "$staged" "$release" "$old"
      exit 1
    fi
    systemctl enable --quiet "$unit@$new.service"
    retire "$unit" "$old"
    ;;
  *)
    echo "instances: unknown verb $verb" >&2
    exit 2
    ;;
esac
