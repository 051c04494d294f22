"""The suite's two xdist workers never run two modules that share lab hosts at once: such
modules are one unit of work (tests/conftest.py)."""

from tests.conftest import GROUP_OF, scope_of


def test_modules_that_share_the_default_lab_are_one_unit():
    assert scope_of("tests/integration/test_smoke.py::test_x") == "default-lab"
    assert scope_of("tests/integration/test_acme.py::test_y[php]") == "default-lab"


def test_a_lab_module_on_hosts_of_its_own_is_a_unit_of_its_own():
    assert (
        scope_of("tests/integration/test_release.py::test_z") == "tests/integration/test_release.py"
    )


def test_unit_test_files_are_units_by_file_even_when_their_name_is_a_lab_modules():
    assert scope_of("tests/unit/test_smoke.py::test_x") == "tests/unit/test_smoke.py"


def test_every_grouped_module_exists():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "integration"
    assert all((folder / f"{module}.py").exists() for module in GROUP_OF)
