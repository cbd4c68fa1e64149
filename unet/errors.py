"""The one exception type the product raises for things a user can fix.

Its message is written for the user (it names the file, the key or the value and says what is wrong); the edges
(pages, command line) show it as it is, without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input, explained in the user's words."""
