# -*- test-case-name: tests.test_init,tests.test_config -*-
"""
Writing the C{<cluster>} block of C{etc/ossec.conf}, for C{wazuh-cluster
init}: a new file holding only the block (L{renderOssecConf}), or an
existing Wazuh file with its block replaced and everything else kept byte
for byte (L{spliceClusterBlock}).
"""

import re
from xml.sax.saxutils import escape

from wazuhcluster.ossecconf import (
    XML_COMMENT,
    decodeText,
    parseClusterConfig,
    readError,
)


def _yesNoText(flag):
    return "yes" if flag else "no"


def _clusterBlockLines(config, indent):
    """
    The lines of a C{<cluster>} element holding C{config}, each starting
    with C{indent}.
    """
    simple = [
        ("name", config.name),
        ("node_name", config.node_name),
        ("node_type", config.node_type),
        ("key", config.key),
        ("port", str(config.port)),
        ("bind_addr", config.bind_addr),
    ]
    lines = ["<cluster>"]
    lines.extend(f"  <{tag}>{escape(value)}</{tag}>" for tag, value in simple)
    lines.append("  <nodes>")
    lines.extend(f"    <node>{escape(node)}</node>" for node in config.nodes)
    lines.append("  </nodes>")
    lines.append(f"  <hidden>{_yesNoText(config.hidden)}</hidden>")
    lines.append(f"  <disabled>{_yesNoText(config.disabled)}</disabled>")
    lines.append("</cluster>")
    return [indent + line for line in lines]


def renderOssecConf(config):
    """
    Write a complete ossec.conf holding C{config} as its C{<cluster>} block,
    with Wazuh's element names, pretty-printed.

    @type config: L{ClusterConfig}
    @rtype: C{bytes} (UTF-8)
    """
    lines = ["<ossec_config>", *_clusterBlockLines(config, "  "), "</ossec_config>", ""]
    return "\n".join(lines).encode("utf-8")


CLUSTER_ELEMENT = re.compile(r"<cluster\b[^>]*?(?:/>|>.*?</cluster\s*>)", re.DOTALL)
OSSEC_CONFIG_END = re.compile(r"</ossec_config\s*>")


def _outsideComments(pattern, text):
    """
    The matches of C{pattern} in C{text} that do not start inside an XML
    comment.
    """
    comments = [m.span() for m in XML_COMMENT.finditer(text)]
    return [
        m for m in pattern.finditer(text)
        if not any(start <= m.start() < end for start, end in comments)
    ]


def spliceClusterBlock(xmlBytes, config):
    """
    Put C{config} into an existing ossec.conf as its only C{<cluster>}
    block, keeping everything else (other sections, comments, layout) as it
    was: the first C{<cluster>} element is replaced in place and any later
    one removed; a file without one gets it before its last
    C{</ossec_config>}.

    @param xmlBytes: the current content (C{bytes}, UTF-8).
    @type config: L{ClusterConfig}
    @rtype: C{bytes} (UTF-8)
    @raise ConfigError: 3006 when the current content cannot be read, or the
        result would not read back as C{config}.
    """
    text = decodeText(xmlBytes)
    blocks = _outsideComments(CLUSTER_ELEMENT, text)
    if blocks:
        first = blocks[0]
        lineStart = text.rfind("\n", 0, first.start()) + 1
        indent = text[lineStart:first.start()]
        if indent.strip():
            indent = "  "
        block = "\n".join(_clusterBlockLines(config, indent))[len(indent):]
        pieces, position = [], 0
        for number, match in enumerate(blocks):
            pieces.append(text[position:match.start()])
            if number == 0:
                pieces.append(block)
            position = match.end()
        pieces.append(text[position:])
        result = "".join(pieces)
    else:
        ends = _outsideComments(OSSEC_CONFIG_END, text)
        if ends:
            end = ends[-1].start()
            before = text[:end]
            if not before.endswith("\n"):
                before += "\n"
            block = "\n".join(_clusterBlockLines(config, "  ")) + "\n"
            result = before + block + text[end:]
        else:
            separator = "" if not text or text.endswith("\n") else "\n"
            result = text + separator + renderOssecConf(config).decode("utf-8")
    content = result.encode("utf-8")
    if parseClusterConfig(content) != config:
        raise readError("its <cluster> block could not be replaced; edit it by hand", None)
    return content
