"""The package's own roles, one folder each (see mtls_deploy/role_loader.py for the contract).

The engine loads each ``roles/<name>/role.py`` by its file path: nothing imports this package,
and roles never import each other (what one gives another travels as ``exports``).
"""
