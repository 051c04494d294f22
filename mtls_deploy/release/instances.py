"""Instances of a backend's template unit ``<unit>@.service``, one per release (two while a new
one gets ready), for the backends that nginx reaches through a socket link in the release
(backend_proxy, and backend_python with an app): a switch starts the new release's instance
beside the old one, points the new release's link at its socket once it is ready, and stops the
old instance once ``current`` names the new release. nginx's connect() follows the links, so a
switch needs no nginx reload, and nothing new reaches the old instance while it finishes what it
has. The shell side is ``templates/release/instances.sh``."""

from ..shell import ShellCommand
from ..templating import TEMPLATES_DIR

INSTANCES = (TEMPLATES_DIR / "release" / "instances.sh").read_text()
# Where the release's path goes in a backend's staged settings: a control character, which no
# inventory value can hold (the schema), replaced for each instance by instances.sh.
MARK = "\x01"


def instances(verb: str, link: str, *arguments: str) -> ShellCommand:
    """One call of instances.sh: ``verb`` for the instances whose socket each release links at
    ``link`` (``.proxy.sock``), as one command of a step."""
    return (("sh", "-c", INSTANCES, "instances", verb, link, *arguments),)
