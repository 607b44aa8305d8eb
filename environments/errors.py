"""The one error type for bad user input (scenario, image, audio, instance file, API request).

The CLI turns it into one line on stderr and exit code 2; anything else is an internal error.
"""


class ShopfloorInputError(ValueError):
    """Bad user input. The message is one line naming what is wrong and what is allowed."""
