//! The order a script declares things in: `this.l1 = …` before `this.act = …`, and map-literal
//! keys as written. Rhai maps keep their keys sorted, so the model summary asks this to list a
//! module's children in declaration order, as PyTorch's `named_modules` does.
use rhai::{ASTNode, Expr, Position, Stmt, AST};
use std::collections::HashMap;

/// Where each assigned property or map-literal key first appears in `ast` (line, column).
pub type DeclarationOrder = HashMap<String, (usize, usize)>;

/// Every `x.name = …` assignment target (the last property of the chain) and `#{name: …}` key
/// of the script, at its first position in the source.
pub fn declaration_order(ast: &AST) -> DeclarationOrder {
    let mut first = DeclarationOrder::new();
    let mut note = |name: &str, pos: Position| {
        let at = (pos.line().unwrap_or(usize::MAX), pos.position().unwrap_or(0));
        let e = first.entry(name.to_string()).or_insert(at);
        *e = (*e).min(at);
    };
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Assignment(x))) => {
                if let Some((name, pos)) = assigned_property(&x.1.lhs) {
                    note(name, pos);
                }
            }
            Some(ASTNode::Expr(Expr::Map(m, _))) => {
                for (id, _) in m.0.iter() {
                    note(id.name.as_str(), id.pos);
                }
            }
            _ => {}
        }
        true
    });
    first
}

/// The property an assignment's left side sets: `name` in `this.name` or `this.a.name`.
fn assigned_property(e: &Expr) -> Option<(&str, Position)> {
    match e {
        Expr::Dot(b, ..) => match &b.rhs {
            Expr::Property(p, pos) => Some((p.2.as_str(), *pos)),
            rhs @ Expr::Dot(..) => assigned_property(rhs),
            _ => None,
        },
        _ => None,
    }
}
