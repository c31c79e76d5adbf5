"""The error a backend raises when its optional runtime is not installed."""


def missing_extra(backend: str, extra: str, package: str) -> ValueError:
    return ValueError(
        f"the {backend} backend needs the package '{package}', which is not installed "
        f"(pip install 'writetune[{extra}]')"
    )
