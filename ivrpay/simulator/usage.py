"""The usage texts Asterisk 22 sends in a multi-line 520 reply.

Asterisk renders each command's XML documentation: one line per paragraph, markup such as
``<literal>`` left in. STREAM FILE, SAY DIGITS and GET DATA are verbatim from fixture 06; the
others are rendered the same way from ``res_agi.c``'s documentation.
"""

from __future__ import annotations

USAGE_HEAD = "520-Invalid command syntax.  Proper usage follows:"
USAGE_TAIL = "520 End of proper usage."
USAGE_NONE = "520 Invalid command syntax.  Proper usage not available."

_SAY = (
    "returning early if any of the given DTMF digits are received on the channel. Returns "
    "<literal>0</literal> if playback completes without a digit being pressed, or the ASCII "
    "numerical value of the digit if one was pressed or <literal>-1</literal> on error/hangup."
)
_DB_RESULT = "Returns <literal>1</literal> if successful, <literal>0</literal> otherwise."

USAGE: dict[tuple[str, ...], tuple[str, ...]] = {
    ("STREAM", "FILE"): (
        "Send the given file, allowing playback to be interrupted by the given digits, if any. "
        "Returns <literal>0</literal> if playback completes without a digit being pressed, or "
        "the ASCII numerical value of the digit if one was pressed, or <literal>-1</literal> on "
        "error or if the channel was disconnected. If musiconhold is playing before calling "
        "stream file it will be automatically stopped and will not be restarted after "
        "completion.",
        "It sets the following channel variables upon completion:",
        "<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text string.",
        "    <value>SUCCESS</value>",
        "    <value>FAILED</value>",
    ),
    ("SAY", "DIGITS"): ("Say a given digit string, " + _SAY,),
    ("SAY", "NUMBER"): ("Say a given number, " + _SAY.replace(". Returns", ".  Returns"),),
    ("SAY", "ALPHA"): ("Say a given character string, " + _SAY,),
    ("SAY", "PHONETIC"): (
        "Say a given character string with phonetics, returning early if any of the given DTMF "
        "digits are received on the channel. Returns <literal>0</literal> if playback completes "
        "without a digit pressed, the ASCII numerical value of the digit if one was pressed, or "
        "<literal>-1</literal> on error/hangup.",
    ),
    ("GET", "DATA"): (
        "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
        "Returns the digits received from the channel at the other end.",
    ),
    ("GET", "OPTION"): ("Behaves similar to STREAM FILE but used with a timeout option.",),
    ("WAIT", "FOR", "DIGIT"): (
        "Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive a "
        "DTMF digit. Returns <literal>-1</literal> on channel failure, <literal>0</literal> if "
        "no digit is received in the timeout, or the numerical value of the ascii of the digit "
        "if one is received. Use <literal>-1</literal> for the <replaceable>timeout</replaceable> "
        "value if you desire the call to block indefinitely.",
    ),
    ("GET", "VARIABLE"): (
        "Returns <literal>0</literal> if <replaceable>variablename</replaceable> is not set. "
        "Returns <literal>1</literal> if <replaceable>variablename</replaceable> is set and "
        "returns the variable in parentheses.",
        "Example return code: 200 result=1 (testvariable)",
    ),
    ("GET", "FULL", "VARIABLE"): (
        "Returns <literal>0</literal> if <replaceable>variablename</replaceable> is not set or "
        "channel does not exist. Returns <literal>1</literal> if "
        "<replaceable>variablename</replaceable> is set and returns the variable in parenthesis. "
        "Understands complex variable names and builtin variables, unlike GET VARIABLE.",
        "Example return code: 200 result=1 (testvariable)",
    ),
    ("SET", "VARIABLE"): ("Sets a variable to the current channel.",),
    ("EXEC",): (
        "Executes <replaceable>application</replaceable> with given "
        "<replaceable>options</replaceable>.",
        "Returns whatever the <replaceable>application</replaceable> returns, or "
        "<literal>-2</literal> on failure to find <replaceable>application</replaceable>.",
    ),
    ("GOSUB",): (
        "Cause the channel to execute the specified dialplan subroutine, returning to the "
        "dialplan with execution of a Return().",
    ),
    ("SET", "MUSIC"): (
        "Enables/Disables the music on hold generator. If <replaceable>class</replaceable> is "
        "not specified, then the <literal>default</literal> music on hold class will be used. "
        "This generator will be stopped automatically when playing a file.",
        "Always returns <literal>0</literal>.",
    ),
    ("VERBOSE",): (
        "Sends <replaceable>message</replaceable> to the console via verbose message system. "
        "<replaceable>level</replaceable> is the verbose level (1-4). Always returns "
        "<literal>1</literal>",
    ),
    ("HANGUP",): (
        "Hangs up the specified channel. If no channel name is given, hangs up the current channel",
    ),
    ("CHANNEL", "STATUS"): (
        "Returns the status of the specified <replaceable>channelname</replaceable>. If no "
        "channel name is given then returns the status of the current channel.",
        "Return values:",
    ),
    ("DATABASE", "GET"): (
        "Retrieves an entry in the Asterisk database for a given "
        "<replaceable>family</replaceable> and <replaceable>key</replaceable>.",
        "Returns <literal>0</literal> if <replaceable>key</replaceable> is not set. Returns "
        "<literal>1</literal> if <replaceable>key</replaceable> is set and returns the variable "
        "in parenthesis.",
        "Example return code: 200 result=1 (testvariable)",
    ),
    ("DATABASE", "PUT"): (
        "Adds or updates an entry in the Asterisk database for a given "
        "<replaceable>family</replaceable>, <replaceable>key</replaceable>, and "
        "<replaceable>value</replaceable>.",
        _DB_RESULT,
    ),
    ("DATABASE", "DEL"): (
        "Deletes an entry in the Asterisk database for a given "
        "<replaceable>family</replaceable> and <replaceable>key</replaceable>.",
        _DB_RESULT,
    ),
    ("DATABASE", "DELTREE"): (
        "Deletes a <replaceable>family</replaceable> or specific "
        "<replaceable>keytree</replaceable> within a <replaceable>family</replaceable> in the "
        "Asterisk database.",
        _DB_RESULT,
    ),
    ("SET", "CONTEXT"): ("Sets the context for continuation upon exiting the application.",),
    ("SET", "EXTENSION"): ("Changes the extension for continuation upon exiting the application.",),
    ("SET", "PRIORITY"): (
        "Changes the priority for continuation upon exiting the application. The priority must "
        "be a valid priority or label.",
    ),
    ("SET", "AUTOHANGUP"): (
        "Cause the channel to automatically hangup at <replaceable>time</replaceable> seconds in "
        "the future. Of course it can be hungup before then as well. Setting to "
        "<literal>0</literal> will cause the autohangup feature to be disabled on this channel.",
    ),
}


def usage_reply(words: tuple[str, ...]) -> list[str]:
    """The 520 reply for a command used wrongly: multi-line when its usage is known."""
    text = USAGE.get(words)
    if not text:
        return [USAGE_NONE]
    return [USAGE_HEAD, *text, USAGE_TAIL]
